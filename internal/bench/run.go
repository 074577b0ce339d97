package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concordtm/concord/client"
)

// probeTimeout bounds the first API call, which checks that the
// coordinator answers before the workers start.
const probeTimeout = 10 * time.Second

// Result is what one run measured. Only transactions that ended inside the
// measured period count; those cut off by its end are dropped, not counted
// as errors.
type Result struct {
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"duration_s"` // measured period
	WarmupS     float64 `json:"warmup_s"`
	Coordinator string  `json:"coordinator"` // its URL
	Host        Host    `json:"host"`        // where the bench ran

	Count  int     `json:"count"`  // transactions that succeeded
	Errors int     `json:"errors"` // calls that failed, or transactions that ended other than succeeded
	TPS    float64 `json:"tps"`    // Count per second of the measured period

	// Latency of the succeeded transactions, from the first API call to
	// the final outcome, in milliseconds.
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`

	// Of a child coordinator only (zero with Config.Addr): its peak
	// resident memory over the whole run (VmHWM, MiB) and its CPU time
	// (user + system) during the measured period per succeeded
	// transaction, in milliseconds.
	RSSMB      float64 `json:"rss_mb,omitempty"`
	CPUMsPerTx float64 `json:"cpu_ms_per_tx,omitempty"`
	// The largest anonymous resident memory (RssAnon, MiB) seen in samples
	// every 100 ms: the process's own memory, without the pages of its
	// executable that RSSMB also counts. Those vary with the kernel's page
	// cache (a freshly built binary is mapped in 2 MiB folios: +16 MiB).
	RSSAnonMB float64 `json:"rss_anon_mb,omitempty"`

	FirstError string `json:"first_error,omitempty"`

	// With Config.PollDashboard: dashboard polls made, and those that
	// failed (also counted in Errors).
	DashboardPolls  int `json:"dashboard_polls,omitempty"`
	DashboardErrors int `json:"dashboard_errors,omitempty"`

	xa xaCheck // of ModeTwoPCXA, for tests
}

// Run measures the coordinator as cfg says. It returns once the measured
// period is over, having stopped everything it started, or early with
// context.Cause(ctx) when ctx ends or with an error when the child
// coordinator dies. Failed transactions are counted in Result.Errors, not
// returned as an error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	p, err := startParticipants()
	if err != nil {
		return Result{}, fmt.Errorf("participants: %w", err)
	}
	defer p.close()
	var xw *xaWorkload
	if cfg.Mode == ModeTwoPCXA {
		if xw, err = openXA(ctx, cfg); err != nil {
			return Result{}, err
		}
		defer xw.close() // after the coordinator's stop: rolls back what is left
	}

	var coords []*child
	base, _ := coordinatorURL(cfg.Addr)
	bases := []string{base}
	if cfg.Addr == "" {
		bin := cfg.Binary
		if bin == "" {
			if bin, err = os.Executable(); err != nil {
				return Result{}, fmt.Errorf("locate the concord binary: %w", err)
			}
		}
		var extra []string
		if cfg.Store != "" && cfg.StoreAsIs {
			extra = []string{"-store", cfg.Store}
		} else if cfg.Store != "" {
			u, cleanup, err := freshNamespace(ctx, cfg.Store)
			if err != nil {
				return Result{}, err
			}
			defer cleanup() // after the children stop
			extra = []string{"-store", u}
		}
		bases = bases[:0]
		for range max(cfg.Coordinators, 1) {
			coord, err := startChild(ctx, bin, extra...)
			if err != nil {
				return Result{}, err
			}
			defer coord.stop()
			coords = append(coords, coord)
			bases = append(bases, coord.url)
			go func() {
				select {
				case <-coord.exited:
					cancel(fmt.Errorf("coordinator exited during the run (%v); its stderr:\n%s", coord.cmd.ProcessState, coord.stderr))
				case <-ctx.Done():
				}
			}()
		}
		base = strings.Join(bases, ",")
	}

	clients := make([]*client.Client, len(bases))
	for i, b := range bases {
		clients[i] = client.New(b)
	}
	c := clients[0]
	for _, cl := range clients {
		probe, stopProbe := context.WithTimeout(ctx, probeTimeout)
		_, err = cl.NewGID(probe)
		stopProbe()
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				return Result{}, cause
			}
			return Result{}, fmt.Errorf("coordinator at %s does not answer: %w", base, err)
		}
	}

	prefix := cfg.GIDPrefix
	if prefix == "" {
		prefix = "bench-" + strings.ToLower(rand.Text()[:6]) + "-"
	}
	var seq atomic.Int64
	gid := func() string { return prefix + strconv.FormatInt(seq.Add(1), 10) }
	txns := make([]txnFunc, len(clients))
	for i, cl := range clients {
		txns[i] = newTxnFunc(cfg.Mode, cl, p, gid)
		if xw != nil {
			txns[i] = xw.txn(cl)
		}
	}
	from := time.Now().Add(cfg.Warmup)
	end := from.Add(cfg.Duration)
	runCtx, stopRun := context.WithDeadline(ctx, end)
	defer stopRun()

	var wg sync.WaitGroup
	before := make([]procUsage, len(coords))
	var beforeOK bool
	if len(coords) > 0 {
		wg.Go(func() {
			t := time.NewTimer(time.Until(from))
			defer t.Stop()
			select {
			case <-t.C:
				beforeOK = true
				for i, coord := range coords {
					u, err := readUsage(coord.pid())
					before[i], beforeOK = u, beforeOK && err == nil
				}
			case <-runCtx.Done():
			}
		})
	}
	var anonPeak int64 // bytes, written by the sampler until wg.Wait
	if len(coords) > 0 {
		wg.Go(func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				for _, coord := range coords {
					if a, err := readAnon(coord.pid()); err == nil {
						anonPeak = max(anonPeak, a)
					}
				}
				select {
				case <-t.C:
				case <-runCtx.Done():
					return
				}
			}
		})
	}
	var dash dashboardPoller
	if cfg.PollDashboard {
		wg.Go(func() { dash.run(runCtx, c, bases[0]) })
	}
	var counted, failed atomic.Int64
	if cfg.Progress != nil {
		wg.Go(func() { progress(runCtx, cfg, from, &counted, &failed) })
	}
	// A transaction still running at the end is finished, not cut off
	// (not counted, but not abandoned either): on a coordinator that
	// stays up, an abandoned one would retry against participants that
	// are gone and end stuck.
	drainCtx, stopDrain := context.WithDeadline(ctx, end.Add(drainGrace))
	defer stopDrain()
	workers := make([]worker, cfg.Concurrency)
	for i := range workers {
		workers[i].counted, workers[i].failed = &counted, &failed
		wg.Go(func() { workers[i].run(drainCtx, txns[i%len(txns)], from, end) })
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}

	res := Result{
		Mode: cfg.Mode, Concurrency: cfg.Concurrency, Coordinator: base,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(),
		Host: thisHost(),
	}
	var all []time.Duration
	for i := range workers {
		w := &workers[i]
		all = append(all, w.latencies...)
		res.Errors += w.errors
		if w.firstErr != nil && res.FirstError == "" {
			res.FirstError = w.firstErr.Error()
		}
	}
	res.DashboardPolls, res.DashboardErrors = int(dash.polls.Load()), int(dash.errors.Load())
	res.Errors += res.DashboardErrors
	if res.DashboardErrors > 0 && res.FirstError == "" {
		res.FirstError = "dashboard poll failed (ListTransactions or /metrics)"
	}
	res.Count = len(all)
	res.TPS = math.Round(float64(res.Count)/cfg.Duration.Seconds()*10) / 10
	l := summarise(all)
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = ms(l.p50), ms(l.p90), ms(l.p99), ms(l.max)

	if len(coords) > 0 {
		// Read before the deferred stop kills them. A failed read (no
		// /proc) leaves the figures zero, which the report shows as
		// unmeasured. RSS is the largest child's; CPU is all children's.
		var cpu time.Duration
		ok := beforeOK
		for i, coord := range coords {
			after, err := readUsage(coord.pid())
			if err != nil {
				ok = false
				continue
			}
			res.RSSMB = max(res.RSSMB, math.Round(float64(after.Peak)/(1<<20)*10)/10)
			res.RSSAnonMB = math.Round(float64(anonPeak)/(1<<20)*10) / 10
			cpu += after.CPU - before[i].CPU
		}
		if ok && res.Count > 0 {
			res.CPUMsPerTx = math.Round(float64(cpu)/float64(time.Millisecond)/float64(res.Count)*1000) / 1000
		}
	}
	if xw != nil {
		// Before the deferred stop of a child coordinator: finish asks it
		// about the transactions the end of the run cut off.
		// Its problems are failures of the run: the report shows them.
		var problems []string
		if res.xa, err = xw.finish(ctx, c); err != nil {
			problems = append(problems, fmt.Sprintf("2pc-xa cleanup: %v", err))
		}
		for _, side := range []struct {
			name string
			sum  int64
		}{{"mariadb", res.xa.mysqlSum}, {"postgres", res.xa.pgSum}} {
			if res.xa.summed && side.sum != res.xa.committed {
				res.Errors += int(max(res.xa.committed-side.sum, 1))
				problems = append(problems, fmt.Sprintf("2pc-xa check: %d transactions succeeded but the %s rows sum to %d", res.xa.committed, side.name, side.sum))
			}
		}
		if len(problems) > 0 {
			if err != nil {
				res.Errors++
			}
			if res.FirstError == "" {
				res.FirstError = strings.Join(problems, "; ")
			}
		}
	}
	return res, nil
}

// worker runs transactions one after another and records those that end
// inside the measured period [from, end).
type worker struct {
	latencies []time.Duration
	errors    int
	firstErr  error
	// counted and failed are shared by all workers, for progress lines.
	counted, failed *atomic.Int64
}

// drainGrace bounds how long the transactions running at the end of the
// run are waited for.
const drainGrace = 30 * time.Second

// run starts transactions until end; each runs under ctx, which outlasts
// end, so the last ones finish. Those that end after end, or when ctx ends,
// are not counted.
func (w *worker) run(ctx context.Context, txn txnFunc, from, end time.Time) {
	for ctx.Err() == nil && time.Now().Before(end) {
		start := time.Now()
		err := txn(ctx)
		done := time.Now()
		switch {
		case ctx.Err() != nil, !done.Before(end):
			return // cut off by the end of the run: not counted
		case done.Before(from):
			// warm-up
		case err != nil:
			w.errors++
			w.failed.Add(1)
			if w.firstErr == nil {
				w.firstErr = err
			}
		default:
			w.latencies = append(w.latencies, done.Sub(start))
			w.counted.Add(1)
		}
	}
}

// progress writes a line every cfg.ProgressEvery until ctx ends.
func progress(ctx context.Context, cfg Config, from time.Time, counted, failed *atomic.Int64) {
	every := cfg.ProgressEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			if now.Before(from) {
				fmt.Fprintf(cfg.Progress, "bench: warming up (%v left)\n", from.Sub(now).Round(time.Second))
				continue
			}
			el := now.Sub(from)
			n := counted.Load()
			fmt.Fprintf(cfg.Progress, "bench: %v of %v, %d transactions (%.0f/s), %d failed\n",
				el.Round(time.Second), cfg.Duration, n, float64(n)/el.Seconds(), failed.Load())
		}
	}
}
