// Package coordinator is the runtime that drives the pure protocol
// machines: it keeps live transactions in memory, steps them with events,
// makes each new state durable through group commit before carrying out the
// step's calls, arms timers, retries, and resumes every unfinished
// transaction after a restart.
//
// Lock order: an entry's mu, then Coordinator.mu or Coordinator.stopping
// (never two entries' locks at once, never mu and stopping together).
package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/concordtm/concord/internal/failpoint"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/msg"
	"github.com/concordtm/concord/internal/protocol/saga"
	"github.com/concordtm/concord/internal/protocol/tcc"
	"github.com/concordtm/concord/internal/protocol/threepc"
	"github.com/concordtm/concord/internal/protocol/twopc"
	"github.com/concordtm/concord/internal/store"
)

// Errors returned by the Coordinator. The API layer maps them to codes.
var (
	ErrNotFound    = errors.New("coordinator: transaction not found")
	ErrGIDConflict = errors.New("coordinator: gid already used by a different transaction")
	ErrInvalid     = errors.New("coordinator: invalid request")
	ErrUnavailable = errors.New("coordinator: unavailable, retry later")
	ErrClosed      = errors.New("coordinator: shutting down")
	// ErrMoved: another coordinator instance took the transaction over
	// (shared stores); the request may be retried.
	ErrMoved = errors.New("coordinator: transaction is driven by another instance, retry")
)

func machineFor(m protocol.Mode) *protocol.Machine {
	switch m {
	case protocol.ModeSaga:
		return saga.Machine
	case protocol.ModeTCC:
		return tcc.Machine
	case protocol.ModeTwoPC:
		return twopc.Machine
	case protocol.ModeThreePC:
		return threepc.Machine
	case protocol.ModeMsg:
		return msg.Machine
	}
	return nil
}

// Coordinator is the transaction manager runtime. Create it with New, call
// Start to resume unfinished work, and Close to stop.
type Coordinator struct {
	cfg     Config
	store   store.Store
	log     *slog.Logger
	caller  Caller
	commit  *committer
	timers  *timers
	alerter *webhookAlerter

	ctx    context.Context // cancelled by Close; parent of every branch call
	cancel context.CancelFunc
	calls  sync.WaitGroup

	mu     sync.Mutex
	live   map[string]*entry
	closed bool

	// shared is set when several coordinators share the store (see
	// SharedConfig); leaser is the store's lease capability then.
	shared *SharedConfig
	leaser store.Leaser
	loops  sync.WaitGroup // heartbeat, claim and retention loops

	// stopping is read-held while a write is queued or a call started,
	// and write-held by Close to set stopped: nothing is queued on the
	// committer or added to calls once Close has begun waiting for them.
	stopping sync.RWMutex
	stopped  bool

	// Health's last probe of the store, reused for a second.
	healthMu  sync.Mutex
	healthAt  time.Time
	healthErr error
}

// entry is one live (unfinished) transaction.
type entry struct {
	mu  sync.Mutex
	txn protocol.Txn // the newest state; may not be durable yet
	seq uint64       // steps that queued a write
	// durable is the newest state known to be on disk (what readers and
	// waiters see), and durableSeq the step that wrote it.
	durable    protocol.Txn
	durableSeq uint64
	machine    *protocol.Machine
	changed    chan struct{} // closed and replaced on every Report
	broken     bool          // a write failed; the entry is being reloaded
	// ver is the store version of the newest queued write (shared stores
	// only): the next write expects it and writes ver+1.
	ver int64
}

func newEntry(t protocol.Txn, m *protocol.Machine) *entry {
	return &entry{txn: t, durable: t, machine: m, changed: make(chan struct{})}
}

// pendingWrite is a queued store write of one step's state; a deferred
// step has one with a nil done (nothing to wait for).
type pendingWrite struct {
	done chan error
	seq  uint64
}

// New creates a coordinator over s.
func New(cfg Config, s store.Store) *Coordinator {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.RecoveryWorkers <= 0 {
		cfg.RecoveryWorkers = 16
	}
	if cfg.ReloadDelay <= 0 {
		cfg.ReloadDelay = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Caller == nil {
		cfg.Caller = NewSchemeCaller()
	}
	c := &Coordinator{cfg: cfg, store: s, log: cfg.Logger, caller: cfg.Caller, live: map[string]*entry{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.commit = newCommitter(s, cfg.MaxBatch, cfg.Listener.GroupCommit)
	c.timers = newTimers(func(gid string) { c.deliver(gid, protocol.Tick{Now: now()}) })
	if cfg.Shared != nil {
		sc := *cfg.Shared
		if sc.Instance == "" {
			var b [6]byte
			rand.Read(b[:])
			sc.Instance = "c-" + hex.EncodeToString(b[:])
		}
		if sc.LeaseTTL <= 0 {
			sc.LeaseTTL = 10 * time.Second
		}
		if sc.ClaimInterval <= 0 {
			sc.ClaimInterval = sc.LeaseTTL / 4
		}
		if sc.ClaimBatch <= 0 {
			sc.ClaimBatch = 256
		}
		if sc.PollInterval <= 0 {
			sc.PollInterval = 50 * time.Millisecond
		}
		c.shared = &sc
		c.leaser, _ = s.(store.Leaser)
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = time.Minute
	}
	if cfg.RetentionBatch <= 0 {
		cfg.RetentionBatch = 500
	}
	c.cfg = cfg
	if cfg.AlertWebhook != "" {
		c.alerter = &webhookAlerter{url: cfg.AlertWebhook, client: &http.Client{Timeout: 10 * time.Second}, log: c.log}
	}
	return c
}

func now() int64 { return time.Now().UnixNano() }

// Instance is this coordinator's name in a shared store ("" when the store
// is not shared).
func (c *Coordinator) Instance() string {
	if c.shared == nil {
		return ""
	}
	return c.shared.Instance
}

// Start loads every unfinished transaction from the store and resumes it in
// the background. It returns once they are loaded. On a shared store it
// instead announces this instance and starts claiming the transactions of
// instances that died.
func (c *Coordinator) Start(ctx context.Context) error {
	if c.cfg.Retention > 0 {
		if d, ok := c.store.(store.Deleter); ok {
			c.loops.Add(1)
			go c.retentionLoop(d)
		} else {
			c.log.Warn("retention is set but the store cannot delete; ignoring it")
		}
	}
	if c.cfg.InDoubtAlert > 0 {
		c.loops.Add(1)
		go c.inDoubtLoop()
	}
	if c.shared != nil {
		return c.startShared(ctx)
	}
	var loaded []*entry
	err := c.store.Unfinished(ctx, func(r store.Record) error {
		t, err := decode(r.Data)
		if err != nil {
			c.log.Error("skipping unreadable record", "gid", r.GID, "err", err)
			return nil
		}
		e := newEntry(t, machineFor(t.Mode))
		c.mu.Lock()
		c.live[t.GID] = e
		c.mu.Unlock()
		loaded = append(loaded, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("recovery scan: %w", err)
	}
	if len(loaded) > 0 {
		c.log.Info("resuming unfinished transactions", "count", len(loaded))
	}
	go func() {
		sem := make(chan struct{}, c.cfg.RecoveryWorkers)
		for _, e := range loaded {
			sem <- struct{}{}
			go func(e *entry) {
				defer func() { <-sem }()
				c.resumed(e, "restart")
				c.apply(e, protocol.Recover{Now: now()})
			}(e)
		}
	}()
	return nil
}

// Close stops timers and in-flight calls and flushes pending writes. It
// does not close the store.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.stopping.Lock()
	c.stopped = true
	c.stopping.Unlock()
	c.timers.stop()
	c.cancel()
	c.calls.Wait()
	if cl, ok := c.caller.(io.Closer); ok {
		if err := cl.Close(); err != nil {
			c.log.Warn("closing the branch caller", "err", err)
		}
	}
	c.commit.stop()
	c.loops.Wait()
	if c.leaser != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.leaser.Release(ctx, c.shared.Instance); err != nil {
			c.log.Warn("could not release the instance lease; others take over after the lease time", "err", err)
		}
	}
	return nil
}

// resumed tells the listener that e, not accepted in this run, is being
// taken up again.
func (c *Coordinator) resumed(e *entry, how string) {
	if c.cfg.Listener.Resumed == nil {
		return
	}
	e.mu.Lock()
	gid, mode := e.txn.GID, e.txn.Mode
	e.mu.Unlock()
	c.cfg.Listener.Resumed(gid, mode, how)
}

// NewGID mints a unique, time-ordered global transaction id.
func NewGID() string {
	var b [8]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405.000") + "-" + hex.EncodeToString(b[:])
}

// lookup returns the live entry for gid, or nil.
func (c *Coordinator) lookup(gid string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live[gid]
}

// deliver applies an internal event (result, tick) to a live transaction;
// events for transactions that are no longer live are dropped.
func (c *Coordinator) deliver(gid string, ev protocol.Event) {
	e := c.lookup(gid)
	if e == nil {
		return
	}
	if _, err := c.apply(e, ev); err != nil && !errors.Is(err, protocol.ErrInvalidTransition) && !errors.Is(err, ErrClosed) {
		c.log.Warn("event failed", "gid", gid, "event", ev.Kind(), "err", err)
	}
}

// apply steps e with ev and carries out the effects.
func (c *Coordinator) apply(e *entry, ev protocol.Event) (protocol.Txn, error) {
	e.mu.Lock()
	old := e.txn
	nt, fx, w, err := c.stepLocked(e, ev)
	e.mu.Unlock()
	if err != nil {
		return old, err
	}
	return c.finish(context.Background(), e, old, nt, ev, fx, w)
}

// stepLocked runs the machine and, when the state changed, queues the
// write. It must be called with e.mu held, so that writes of one
// transaction are queued in step order.
func (c *Coordinator) stepLocked(e *entry, ev protocol.Event) (protocol.Txn, []protocol.Effect, *pendingWrite, error) {
	if e.broken {
		return protocol.Txn{}, nil, nil, fmt.Errorf("%w: %s is being reloaded after a failed write", ErrUnavailable, e.txn.GID)
	}
	nt, fx, err := e.machine.Step(e.txn, ev)
	if err != nil {
		return nt, nil, nil, err
	}
	if e.txn.DecidedAt == 0 && nt.DecidedAt != 0 {
		failpoint.Hit(failpoint.BeforeDecision)
	}
	var w *pendingWrite
	if len(fx) > 0 {
		if _, ok := fx[0].(protocol.Deferred); ok {
			// Kept in memory only; the next written state carries it.
			fx = fx[1:]
			w = &pendingWrite{} // no write to wait for
		} else if _, ok := fx[0].(protocol.Persist); ok {
			rec, err := encode(&nt)
			if err != nil {
				return nt, nil, nil, fmt.Errorf("encode %s: %w", nt.GID, err)
			}
			// The first write of a transaction created here: create()
			// made sure no record exists.
			rec.Fresh = e.seq == 0 && e.durable.Status == protocol.StatusNew
			if c.shared != nil {
				rec.Owner = c.shared.Instance
				rec.Version = e.ver + 1
			}
			c.stopping.RLock()
			if c.stopped {
				c.stopping.RUnlock()
				return nt, nil, nil, ErrClosed
			}
			e.seq++
			e.ver = rec.Version
			w = &pendingWrite{done: c.commit.enqueue(rec), seq: e.seq}
			c.stopping.RUnlock()
			fx = fx[1:]
		}
	}
	e.txn = nt
	return nt, fx, w, nil
}

// finish waits for the step's write to be durable and then carries out the
// remaining effects. Nothing reaches a participant or a waiter before the
// state that led to it is on disk. ctx is the submission's context when
// the step creates the transaction (Listener.Started gets it).
func (c *Coordinator) finish(ctx context.Context, e *entry, old, nt protocol.Txn, ev protocol.Event, fx []protocol.Effect, w *pendingWrite) (protocol.Txn, error) {
	if w != nil {
		if w.done != nil {
			if err := <-w.done; err != nil {
				if errors.Is(err, store.ErrConflict) {
					c.disown(e)
					return nt, fmt.Errorf("%w: %w", ErrMoved, err)
				}
				c.writeFailed(e, err)
				return nt, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			e.mu.Lock()
			if w.seq > e.durableSeq {
				e.durable, e.durableSeq = nt, w.seq
			}
			e.mu.Unlock()
			if old.Status == protocol.StatusNew && c.cfg.Listener.Started != nil {
				c.cfg.Listener.Started(ctx, nt.GID, nt.Mode)
			}
		}
		c.crashPoints(old, nt, ev, fx)
	}
	for _, f := range fx {
		switch f := f.(type) {
		case protocol.Call:
			c.startCall(nt.GID, nt.Mode, withPeers(nt, f))
		case protocol.Arm:
			c.timers.arm(nt.GID, f.At)
		case protocol.Report:
			e.mu.Lock()
			close(e.changed)
			e.changed = make(chan struct{})
			e.mu.Unlock()
		case protocol.Alert:
			c.raise(nt, f)
		}
	}
	if nt.Status.Final() && w != nil && w.done != nil {
		c.mu.Lock()
		if c.live[nt.GID] == e {
			delete(c.live, nt.GID)
		}
		c.mu.Unlock()
		c.timers.disarm(nt.GID)
		if c.cfg.Listener.Finished != nil {
			c.cfg.Listener.Finished(nt.Mode, nt.Status)
		}
		if c.cfg.Listener.Ended != nil {
			c.cfg.Listener.Ended(nt.GID, nt.Mode, nt.Status)
		}
	}
	return nt, nil
}

// crashPoints fires the named failpoints that this step crosses.
func (c *Coordinator) crashPoints(old, nt protocol.Txn, ev protocol.Event, fx []protocol.Effect) {
	switch ev := ev.(type) {
	case protocol.Submit:
		if nt.Mode == protocol.ModeSaga {
			failpoint.Hit(failpoint.AfterAccept)
		}
	case protocol.Result:
		if ev.Outcome == protocol.OutcomeSuccess && (ev.Op == protocol.OpAction) && nt.Status == protocol.StatusRunning {
			for _, f := range fx {
				if _, ok := f.(protocol.Call); ok {
					failpoint.Hit(failpoint.BetweenBranches)
					break
				}
			}
		}
		if ev.Outcome == protocol.OutcomeSuccess && (ev.Op == protocol.OpCompensate || ev.Op == protocol.OpCancel) &&
			(nt.Status == protocol.StatusCompensating || nt.Status == protocol.StatusCancelling) {
			failpoint.Hit(failpoint.DuringCompensation)
		}
	}
	if old.DecidedAt == 0 && nt.DecidedAt != 0 && !nt.Status.Final() {
		failpoint.Hit(failpoint.AfterDecision)
	}
}

// writeFailed takes a transaction whose write failed out of memory and
// reloads it from the store later: the store holds the last durable state,
// from which Recover resumes safely.
func (c *Coordinator) writeFailed(e *entry, err error) {
	e.mu.Lock()
	e.broken = true
	gid := e.txn.GID
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	c.log.Error("store write failed; will reload the transaction", "gid", gid, "err", err)
	c.mu.Lock()
	if c.live[gid] == e {
		delete(c.live, gid)
	}
	c.mu.Unlock()
	c.timers.disarm(gid)
	time.AfterFunc(c.cfg.ReloadDelay, func() { c.reload(gid) })
}

func (c *Coordinator) reload(gid string) {
	c.mu.Lock()
	if c.closed || c.live[gid] != nil {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if c.shared != nil {
		// Still ours unless a claim or a request moved it elsewhere.
		rec, err := c.store.Get(c.ctx, gid)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			time.AfterFunc(c.cfg.ReloadDelay, func() { c.reload(gid) })
			return
		}
		if err != nil || rec.Owner != c.shared.Instance || rec.Finished {
			return
		}
		if _, err := c.adopt(c.ctx, gid); err != nil && !errors.Is(err, ErrMoved) && !errors.Is(err, ErrClosed) {
			c.log.Warn("reload failed", "gid", gid, "err", err)
			time.AfterFunc(c.cfg.ReloadDelay, func() { c.reload(gid) })
		}
		return
	}
	rec, err := c.store.Get(c.ctx, gid)
	if errors.Is(err, store.ErrNotFound) {
		return // never became durable: the client was told it failed
	}
	if err != nil {
		time.AfterFunc(c.cfg.ReloadDelay, func() { c.reload(gid) })
		return
	}
	t, err := decode(rec.Data)
	if err != nil || t.Status.Final() {
		return
	}
	e := newEntry(t, machineFor(t.Mode))
	c.mu.Lock()
	if c.live[gid] != nil {
		c.mu.Unlock()
		return
	}
	c.live[gid] = e
	c.mu.Unlock()
	c.apply(e, protocol.Recover{Now: now()})
}

func (c *Coordinator) startCall(gid string, mode protocol.Mode, call protocol.Call) {
	c.stopping.RLock()
	defer c.stopping.RUnlock()
	if c.stopped {
		return // shutting down: recovery makes this call after the restart
	}
	c.calls.Add(1)
	go func() {
		defer c.calls.Done()
		ctx, done := c.ctx, func(protocol.Outcome, string) {}
		if c.cfg.Listener.CallStart != nil {
			if cctx, d := c.cfg.Listener.CallStart(ctx, gid, mode, call); d != nil {
				ctx, done = cctx, d
			} else if cctx != nil {
				ctx = cctx
			}
		}
		started := time.Now()
		outcome, msg := protocol.OutcomeUnknown, ""
		if err := c.cfg.Destinations.Check(call.URL); err != nil {
			msg = "not called: " + err.Error()
		} else {
			outcome, msg = c.caller.Call(ctx, gid, mode, call)
		}
		msg = boundError(scrubSecrets(msg, call.URL))
		done(outcome, msg)
		if c.cfg.Listener.BranchCall != nil {
			c.cfg.Listener.BranchCall(mode, call.Op, outcome, time.Since(started))
		}
		if c.ctx.Err() != nil {
			return // shutting down: the outcome is unknown; recovery redoes it
		}
		c.deliver(gid, protocol.Result{
			Now: now(), Branch: call.Branch, Op: call.Op, Attempt: call.Attempt,
			Started: started.UnixNano(), Outcome: outcome, Error: msg,
		})
	}()
}

func (c *Coordinator) raise(t protocol.Txn, a protocol.Alert) {
	al := Alert{Kind: a.Kind, GID: t.GID, Mode: string(t.Mode), Message: a.Message, At: time.Now().UTC()}
	c.log.Warn("ALERT "+a.Kind, "gid", t.GID, "mode", t.Mode, "detail", a.Message)
	if c.cfg.Listener.Alerted != nil {
		c.cfg.Listener.Alerted(al)
	}
	if c.alerter != nil {
		go c.alerter.send(al)
	}
}
