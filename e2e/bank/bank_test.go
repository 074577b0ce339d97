package bank

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	storeopen "github.com/concordtm/concord/internal/store/open"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
)

// Environment variables of this package.
const (
	EnvDuration = "CONCORD_BANK_DURATION" // load, faults and kills per subtest (a Go duration)
	EnvSeed     = "CONCORD_BANK_SEED"     // replays a workload and kill schedule
	// The shared subtest's first coordinator keeps its -instance name
	// across restarts (as a StatefulSet's pod would: it must resume its
	// own transactions) and the second takes a random name per start (its
	// transactions are claimed by the other when its lease lapses).
	// EnvInstances=fixed names both, =random neither.
	EnvInstances = "CONCORD_BANK_INSTANCES"
)

const (
	workers       = 16
	branchTimeout = time.Second
	// tccShare is the share of transfers run as TCC (the rest are sagas).
	tccShare = 0.3
	// settleTimeout bounds the wait, after the faults stop, for every
	// transaction to finish.
	settleTimeout = 120 * time.Second
	// killEvery is the shortest pause between kills; each pause adds up
	// to killJitter.
	killEvery  = 2 * time.Second
	killJitter = 2500 * time.Millisecond
)

// TestBank moves money between a bank on PostgreSQL and one on MariaDB
// while the participants misbehave and the coordinators are killed, then
// checks every transfer against the coordinator's decision.
func TestBank(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		c := newRun(t)
		c.cluster = newCluster(t, 1, func(int) []string { return coordFlags(branchTimeout) }, c.clientOpts()...)
		c.run()
	})
	t.Run("shared-postgres", func(t *testing.T) {
		c := newRun(t)
		storeURL := withParam(testenv.PostgresDSN(), "table_prefix="+testenv.UniqueName(t, "bk")+"_")
		t.Cleanup(func() { dropStore(storeURL) })
		naming := os.Getenv(EnvInstances)
		c.cluster = newCluster(t, 2, func(i int) []string {
			args := append(coordFlags(branchTimeout), "-store", storeURL, "-lease-ttl", "2s")
			if naming == "fixed" || naming != "random" && i == 0 {
				args = append(args, "-instance", fmt.Sprintf("coord-%c", 'a'+i))
			}
			return args
		}, c.clientOpts()...)
		c.run()
	})
}

// transfer is one transfer of the workload: amount from an account at
// one bank to an account at the other, as a saga or a TCC.
type transfer struct {
	gid      string
	tcc      bool
	from, to *bank
	debit    leg // at from
	credit   leg // at to
}

// run is one subtest: the banks, the coordinators, the workload.
type run struct {
	t        *testing.T
	seed     uint64
	duration time.Duration
	prefix   string // of every gid
	faults   *faults
	banks    []*bank
	cluster  *cluster

	mu        sync.Mutex
	transfers map[string]*transfer

	resubmits  atomic.Int64 // saga submissions repeated after an error
	tccResolve atomic.Int64 // TCCs whose initiator had to abort or look up after an error
}

func newRun(t *testing.T) *run {
	r := &run{t: t, seed: seed(t), duration: duration(t), transfers: map[string]*transfer{}}
	pg, maria := testenv.Postgres(t), testenv.MariaDB(t)
	r.prefix = testenv.UniqueName(t, "bank")
	r.faults = newFaults(r.seed, branchTimeout)
	r.banks = []*bank{
		newBank(t, "pg", pg, participant.Postgres, r.prefix, map[string]int64{"p0": 1000, "p1": 1000, "p2": 1000, "p3": 60}, r.faults),
		newBank(t, "maria", maria, participant.MySQL, r.prefix, map[string]int64{"m0": 1000, "m1": 1000, "m2": 1000, "m3": 60}, r.faults),
	}
	return r
}

// clientOpts bound the initiator's Try calls like the coordinator's.
func (r *run) clientOpts() []client.Option {
	return []client.Option{client.WithParticipantHTTPClient(&http.Client{Timeout: branchTimeout})}
}

func seed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv(EnvSeed); v != "" {
		var err error
		if s, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", EnvSeed, v, err)
		}
	}
	t.Logf("seed %d (replay with %s=%d)", s, EnvSeed, s)
	return s
}

func duration(t *testing.T) time.Duration {
	d := 35 * time.Second
	if testing.Short() {
		d = 10 * time.Second
	}
	if v := os.Getenv(EnvDuration); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("%s=%q: %v", EnvDuration, v, err)
		}
	}
	return d
}

// run drives the load with faults and kills for the run's duration, stops
// the faults, lets everything finish, and checks.
func (r *run) run() {
	t := r.t
	start := time.Now()
	t.Logf("load, faults and kills from %s UTC for %v, %d workers", start.UTC().Format("15:04:05.000"), r.duration, workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	work, cancelWork := context.WithCancel(t.Context())
	defer cancelWork()
	load, stopLoad := context.WithCancel(work)
	defer stopLoad()
	var failed atomic.Bool
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(r.seed, uint64(w)+1))
			for n := 0; load.Err() == nil && !failed.Load(); n++ {
				tr := r.newTransfer(rng, fmt.Sprintf("%s-%02d-%05d", r.prefix, w, n))
				// Once begun, a transfer is driven until the coordinator
				// has it (or, for a TCC, knows it never began), even
				// after the load stops.
				if err := r.transfer(work, tr); err != nil {
					if work.Err() == nil {
						t.Error(err)
					}
					failed.Store(true)
					return
				}
			}
		}()
	}

	killer := rand.New(rand.NewPCG(r.seed, 0xc0))
	for i := 0; ; i++ {
		pause := killEvery + time.Duration(killer.Int64N(int64(killJitter)))
		if time.Since(start)+pause > r.duration {
			break
		}
		select {
		case <-time.After(pause):
		case <-t.Context().Done():
			t.Fatal("test ended while killing")
		}
		if failed.Load() {
			break
		}
		n := i % len(r.cluster.nodes)
		began := time.Now()
		r.cluster.kill9(n)
		t.Logf("+%v kill -9 %s: %d transfers begun so far; restarted in %v",
			time.Since(start).Round(100*time.Millisecond), r.cluster.nodes[n].name, r.count(), time.Since(began).Round(time.Millisecond))
	}
	if rest := r.duration - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	stopLoad()
	wg.Wait()
	loadTook := time.Since(start)
	r.cluster.alive()
	if t.Failed() {
		return
	}

	// Faults off; one last restart of every coordinator; then wait for
	// every transaction to finish and every participant call (late
	// landings included) to end.
	r.faults.on.Store(false)
	for i := range r.cluster.nodes {
		r.cluster.kill9(i)
	}
	settleStart := time.Now()
	final := r.settle()
	testenv.Eventually(t, 30*time.Second, "participant calls to end", func() bool { return r.faults.inflight.Load() == 0 })
	r.checkUnfinished()
	settleTook := time.Since(settleStart)
	r.cluster.alive()
	if t.Failed() {
		return
	}
	counts := r.check(final)
	t.Logf("%d transfers in %v under faults and kills (%d kill -9, %d coordinator lives, %d saga resubmissions, %d TCCs resolved after an error); settled %v after: %s",
		len(final), loadTook.Round(100*time.Millisecond), r.cluster.kills, r.cluster.lives(), r.resubmits.Load(),
		r.tccResolve.Load(), settleTook.Round(100*time.Millisecond), counts)
	t.Logf("%s", r.faults.Summary())
}

// count returns how many transfers have begun.
func (r *run) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.transfers)
}

// newTransfer draws a transfer between the two banks.
func (r *run) newTransfer(rng *rand.Rand, gid string) *transfer {
	from, to := r.banks[0], r.banks[1]
	if rng.IntN(2) == 0 {
		from, to = to, from
	}
	amount := 1 + rng.Int64N(100)
	return &transfer{
		gid: gid, tcc: rng.Float64() < tccShare, from: from, to: to,
		debit:  leg{Account: pick(rng, from), Amount: amount},
		credit: leg{Account: pick(rng, to), Amount: amount},
	}
}

// pick draws one of k's accounts.
func pick(rng *rand.Rand, k *bank) string {
	return fmt.Sprintf("%c%d", k.name[0], rng.IntN(len(k.initial)))
}

// transfer runs tr to the point where the coordinator is responsible for
// it, then waits a while for its end (which paces the load).
func (r *run) transfer(ctx context.Context, tr *transfer) error {
	r.mu.Lock()
	r.transfers[tr.gid] = tr
	r.mu.Unlock()
	var err error
	if tr.tcc {
		err = r.runTCC(ctx, tr)
	} else {
		err = r.submitSaga(ctx, tr)
	}
	if err != nil {
		return err
	}
	r.pace(ctx, tr.gid)
	return nil
}

// submitSaga submits tr as a saga until a coordinator acknowledges it,
// resubmitting the same gid with the same content after an error.
func (r *run) submitSaga(ctx context.Context, tr *transfer) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			r.resubmits.Add(1)
		}
		cl, err := r.cluster.client(ctx)
		if err != nil {
			return fmt.Errorf("submit %s: no coordinator: %v (last error: %v)", tr.gid, err, last)
		}
		_, err = cl.NewSaga(tr.gid).
			AddBranch(client.Branch{ID: debit, Action: tr.from.URL(participant.OpAction), Compensate: tr.from.URL(participant.OpCompensate), Payload: tr.debit}).
			AddBranch(client.Branch{ID: credit, Action: tr.to.URL(participant.OpAction), Compensate: tr.to.URL(participant.OpCompensate), Payload: tr.credit}).
			Submit(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, client.ErrConflict) || errors.Is(err, client.ErrInvalid) || errors.Is(err, client.ErrPrecondition) {
			return fmt.Errorf("submitting %s: %w", tr.gid, err)
		}
		last = err
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("submit %s: not acknowledged after %v: %v", tr.gid, settleTimeout, last)
		}
	}
}

// runTCC runs tr as a TCC: Try at both banks (called from here, through
// the same fault injector), then commit, or roll back after a refused or
// unknown Try. When a coordinator dies under it, the outcome of the
// initiator's calls is unknown: it then makes sure the transaction ends,
// aborting it if still undecided.
func (r *run) runTCC(ctx context.Context, tr *transfer) error {
	cl, err := r.cluster.client(ctx)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	// RunTCC's error (a refused or unknown Try, a coordinator that died)
	// matters less than where the transaction is: settled, or resolved
	// below.
	tx, _ := cl.RunTCC(tctx, tr.gid, client.Options{}, func(ctx context.Context, t *client.TCC) error {
		if _, err := t.CallBranch(ctx, debit, tr.debit, tr.from.URL(participant.OpTry), tr.from.URL(participant.OpConfirm), tr.from.URL(participant.OpCancel)); err != nil {
			return err
		}
		_, err := t.CallBranch(ctx, credit, tr.credit, tr.to.URL(participant.OpTry), tr.to.URL(participant.OpConfirm), tr.to.URL(participant.OpCancel))
		return err
	})
	cancel()
	if client.Settled(tx) {
		return nil
	}
	r.tccResolve.Add(1)
	return r.resolveTCC(ctx, tr.gid)
}

// resolveTCC makes sure a TCC whose initiator lost track of it ends: it
// aborts it if it is still undecided, until a coordinator answers.
func (r *run) resolveTCC(ctx context.Context, gid string) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	var last error
	for {
		cl, err := r.cluster.client(ctx)
		if err != nil {
			return fmt.Errorf("resolve %s: no coordinator: %v (last error: %v)", gid, err, last)
		}
		tx, err := cl.Get(ctx, gid)
		switch {
		case errors.Is(err, client.ErrNotFound):
			return nil // never began: checked at the end
		case err != nil:
			last = err
		case tx.Status != client.StatusRunning:
			return nil // decided
		default:
			_, err = cl.Abort(ctx, gid, "the initiator lost track of it")
			if err == nil || errors.Is(err, client.ErrPrecondition) {
				return nil
			}
			last = err
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("resolve %s: no answer after %v: %v", gid, settleTimeout, last)
		}
	}
}

// pace waits up to a few seconds for gid to end, across restarts.
func (r *run) pace(ctx context.Context, gid string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		cl, err := r.cluster.client(ctx)
		if err != nil {
			return
		}
		tx, err := cl.Wait(ctx, gid)
		if err == nil && client.Settled(tx) || errors.Is(err, client.ErrNotFound) {
			return
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

func withParam(u, kv string) string {
	if strings.Contains(u, "?") {
		return u + "&" + kv
	}
	return u + "?" + kv
}

// dropStore drops the tables of a shared store.
func dropStore(u string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := storeopen.Open(ctx, u)
	if err != nil {
		return
	}
	defer s.Close()
	if d, ok := s.(interface{ Drop(context.Context) error }); ok {
		d.Drop(ctx)
	}
}
