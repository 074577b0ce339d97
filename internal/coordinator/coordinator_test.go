package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/memstore"
)

// scriptedCaller answers calls from a function and, before answering,
// checks that the state that led to the call is already in the store.
type scriptedCaller struct {
	store   store.Store
	answer  func(gid string, c protocol.Call) protocol.Outcome
	mu      sync.Mutex
	calls   []string
	unsafe  atomic.Int32 // calls that arrived before their state was durable
	inCalls atomic.Int32
}

func (s *scriptedCaller) Call(ctx context.Context, gid string, mode protocol.Mode, c protocol.Call) (protocol.Outcome, string) {
	s.inCalls.Add(1)
	defer s.inCalls.Add(-1)
	rec, err := s.store.Get(ctx, gid)
	durable := false
	if err == nil {
		if t, err := decode(rec.Data); err == nil {
			if i := t.Branch(c.Branch); i >= 0 {
				op := t.Branches[i].Fwd
				switch c.Op {
				case t.Branches[i].BackwardOp:
					op = t.Branches[i].Bwd
				case t.Branches[i].MidOp:
					op = t.Branches[i].Mid
				}
				durable = op.Status == protocol.OpInflight && op.Attempts == c.Attempt ||
					// A saga's next action follows a deferred step: the
					// written state shows it idle, and a restart from there
					// re-runs it or compensates it (Txn.MaybeAhead).
					t.Mode == protocol.ModeSaga && t.Status == protocol.StatusRunning &&
						c.Op == protocol.OpAction && op.Status == protocol.OpIdle && c.Attempt == 1
			}
		}
	}
	if !durable {
		s.unsafe.Add(1)
	}
	s.mu.Lock()
	s.calls = append(s.calls, fmt.Sprintf("%s/%s/%s", gid, c.Branch, c.Op))
	s.mu.Unlock()
	if s.answer == nil {
		return protocol.OutcomeSuccess, ""
	}
	out := s.answer(gid, c)
	if out != protocol.OutcomeSuccess {
		return out, "scripted " + string(out)
	}
	return out, ""
}

func (s *scriptedCaller) count(suffix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if len(c) >= len(suffix) && c[len(c)-len(suffix):] == suffix {
			n++
		}
	}
	return n
}

// countingStore counts commits and records per commit.
type countingStore struct {
	store.Store
	commits, records atomic.Int64
	fail             atomic.Bool
}

func (c *countingStore) Commit(ctx context.Context, b []store.Record) error {
	if c.fail.Load() {
		return errors.New("disk on fire")
	}
	c.commits.Add(1)
	c.records.Add(int64(len(b)))
	return c.Store.Commit(ctx, b)
}

func fastOptions() protocol.Options {
	return protocol.Options{
		Timeout: int64(30 * time.Second), BranchTimeout: int64(time.Second), MaxAttempts: 3,
		MaxTotalAttempts: 20, RetryInitial: int64(time.Millisecond), RetryMax: int64(5 * time.Millisecond),
	}
}

func newTestCoordinator(t *testing.T, st store.Store, answer func(string, protocol.Call) protocol.Outcome) (*Coordinator, *scriptedCaller) {
	t.Helper()
	caller := &scriptedCaller{store: st, answer: answer}
	c := New(Config{Defaults: fastOptions(), Caller: caller}, st)
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, caller
}

func twoBranches(gid string) SagaSpec {
	return SagaSpec{GID: gid, Branches: []protocol.Branch{
		{ForwardURL: "http://p/a1", BackwardURL: "http://p/c1"},
		{ForwardURL: "http://p/a2", BackwardURL: "http://p/c2"},
	}}
}

func waitFinal(t *testing.T, c *Coordinator, gid string) protocol.Txn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tx, err := c.Wait(ctx, gid)
	if err != nil {
		t.Fatalf("wait %s: %v (status %s)", gid, err, tx.Status)
	}
	return tx
}

func TestSagaRunsAndEveryCallFollowsDurableState(t *testing.T) {
	st := memstore.New()
	c, caller := newTestCoordinator(t, st, nil)
	if _, err := c.SubmitSaga(t.Context(), twoBranches("g1")); err != nil {
		t.Fatal(err)
	}
	tx := waitFinal(t, c, "g1")
	if tx.Status != protocol.StatusSucceeded {
		t.Fatalf("status %s, want succeeded", tx.Status)
	}
	if n := caller.unsafe.Load(); n != 0 {
		t.Fatalf("%d calls reached a participant before the state that led to them was durable", n)
	}
	rec, err := st.Get(t.Context(), "g1")
	if err != nil || !rec.Finished || rec.Status != "succeeded" {
		t.Fatalf("stored record %+v, err %v: want finished succeeded", rec, err)
	}
}

func TestRejectionCompensatesOnlyWhatRan(t *testing.T) {
	st := memstore.New()
	c, caller := newTestCoordinator(t, st, func(gid string, call protocol.Call) protocol.Outcome {
		if call.Branch == "2" && call.Op == protocol.OpAction {
			return protocol.OutcomeRejected
		}
		return protocol.OutcomeSuccess
	})
	spec := twoBranches("g2")
	spec.Branches = append(spec.Branches, protocol.Branch{ForwardURL: "http://p/a3", BackwardURL: "http://p/c3"})
	if _, err := c.SubmitSaga(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	tx := waitFinal(t, c, "g2")
	if tx.Status != protocol.StatusAborted {
		t.Fatalf("status %s, want aborted", tx.Status)
	}
	if caller.count("/1/compensate") != 1 || caller.count("/2/compensate") != 0 || caller.count("/3/action") != 0 {
		t.Fatalf("calls %v: want branch 1 compensated once, branch 2 not compensated, branch 3 never run", caller.calls)
	}
	if caller.unsafe.Load() != 0 {
		t.Fatal("a compensation reached a participant before the abort decision was durable")
	}
}

func TestIdempotentSubmitAndConflict(t *testing.T) {
	c, caller := newTestCoordinator(t, memstore.New(), nil)
	if _, err := c.SubmitSaga(t.Context(), twoBranches("g3")); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, c, "g3")
	again, err := c.SubmitSaga(t.Context(), twoBranches("g3"))
	if err != nil || again.Status != protocol.StatusSucceeded {
		t.Fatalf("resubmission: %v, status %s; want the finished transaction back", err, again.Status)
	}
	if n := caller.count("/1/action"); n != 1 {
		t.Fatalf("branch 1 action ran %d times, want 1", n)
	}
	other := twoBranches("g3")
	other.Branches[0].Payload = []byte(`{"different":true}`)
	if _, err := c.SubmitSaga(t.Context(), other); !errors.Is(err, ErrGIDConflict) {
		t.Fatalf("different content under a used gid: err %v, want ErrGIDConflict", err)
	}
}

func TestGroupCommitSharesWrites(t *testing.T) {
	st := &countingStore{Store: memstore.New()}
	c, _ := newTestCoordinator(t, st, nil)
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gid := fmt.Sprintf("gc-%d", i)
			if _, err := c.SubmitSaga(t.Context(), twoBranches(gid)); err != nil {
				t.Error(err)
				return
			}
			waitFinal(t, c, gid)
		}()
	}
	wg.Wait()
	// Each saga writes exactly two states, accepted and final (branch 1's
	// success is deferred); concurrent ones share commits.
	if commits, recs := st.commits.Load(), st.records.Load(); recs != 2*n || commits >= recs {
		t.Fatalf("%d records in %d commits: want %d records and fewer commits than records", recs, commits, 2*n)
	}
}

func TestRecoveryResumesAfterRestart(t *testing.T) {
	st := memstore.New()
	block := make(chan struct{})
	first, _ := newTestCoordinator(t, st, func(gid string, call protocol.Call) protocol.Outcome {
		<-block // the first coordinator "dies" with the call in flight
		return protocol.OutcomeUnknown
	})
	if _, err := first.SubmitSaga(t.Context(), twoBranches("g4")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { first.Close(); close(closed) }()
	<-first.ctx.Done() // the coordinator is stopping: the answer is never delivered
	close(block)
	<-closed

	second, caller := newTestCoordinator(t, st, nil)
	tx := waitFinal(t, second, "g4")
	if tx.Status != protocol.StatusSucceeded {
		t.Fatalf("after restart: status %s, want succeeded", tx.Status)
	}
	if caller.count("/1/action") < 1 || caller.count("/2/action") != 1 {
		t.Fatalf("calls after restart %v: want branch 1 re-called and branch 2 called once", caller.calls)
	}
}

func TestStuckThenRetry(t *testing.T) {
	var healthy atomic.Bool
	c, _ := newTestCoordinator(t, memstore.New(), func(gid string, call protocol.Call) protocol.Outcome {
		switch {
		case call.Op == protocol.OpAction && call.Branch == "2":
			return protocol.OutcomeRejected
		case call.Op == protocol.OpCompensate && !healthy.Load():
			return protocol.OutcomeUnknown
		}
		return protocol.OutcomeSuccess
	})
	var alerts atomic.Int32
	c.cfg.Listener.Alerted = func(Alert) { alerts.Add(1) }
	if _, err := c.SubmitSaga(t.Context(), twoBranches("g5")); err != nil {
		t.Fatal(err)
	}
	tx := waitFinal(t, c, "g5")
	if tx.Status != protocol.StatusStuck || tx.StuckPhase != protocol.StatusCompensating {
		t.Fatalf("status %s/%s, want stuck while compensating", tx.Status, tx.StuckPhase)
	}
	if alerts.Load() != 1 {
		t.Fatalf("%d alerts, want 1", alerts.Load())
	}
	healthy.Store(true)
	if _, err := c.Retry(t.Context(), "g5"); err != nil {
		t.Fatal(err)
	}
	if tx := waitFinal(t, c, "g5"); tx.Status != protocol.StatusAborted {
		t.Fatalf("after retry: %s, want aborted", tx.Status)
	}
}

func TestWriteFailureTellsNoParticipant(t *testing.T) {
	st := &countingStore{Store: memstore.New()}
	c, caller := newTestCoordinator(t, st, nil)
	c.cfg.ReloadDelay = time.Hour
	st.fail.Store(true)
	_, err := c.SubmitSaga(t.Context(), twoBranches("g6"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("submit with a failing store: %v, want ErrUnavailable", err)
	}
	if n := caller.inCalls.Load() + int32(len(caller.calls)); n != 0 {
		t.Fatalf("%d calls made although nothing was durable", n)
	}
	st.fail.Store(false)
	if _, err := c.Get(t.Context(), "g6"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after failed submit: %v, want ErrNotFound", err)
	}
	// The same gid can be submitted again once the store works.
	if _, err := c.SubmitSaga(t.Context(), twoBranches("g6")); err != nil {
		t.Fatal(err)
	}
	if tx := waitFinal(t, c, "g6"); tx.Status != protocol.StatusSucceeded {
		t.Fatalf("status %s", tx.Status)
	}
}

func TestConcurrentSubmitsOfOneGIDRunItOnce(t *testing.T) {
	c, caller := newTestCoordinator(t, memstore.New(), nil)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, err := c.SubmitSaga(t.Context(), twoBranches("same"))
			if err != nil {
				t.Error(err)
				return
			}
			if tx.Status == protocol.StatusNew {
				t.Error("a submitter was answered before the transaction was durable")
			}
		}()
	}
	wg.Wait()
	waitFinal(t, c, "same")
	if n := caller.count("/1/action"); n != 1 {
		t.Fatalf("branch 1 action ran %d times, want 1", n)
	}
	if caller.unsafe.Load() != 0 {
		t.Fatal("a call preceded its durable state")
	}
}

func TestRegisterWithBeginOpensTheTCC(t *testing.T) {
	st := &countingStore{Store: memstore.New()}
	c, caller := newTestCoordinator(t, st, nil)
	opts := &protocol.Options{Timeout: int64(time.Minute)}
	b1 := protocol.Branch{ID: "stock", ForwardURL: "http://p/confirm1", BackwardURL: "http://p/cancel1"}
	b2 := protocol.Branch{ID: "pay", ForwardURL: "http://p/confirm2", BackwardURL: "http://p/cancel2"}
	tx, err := c.RegisterBranch(t.Context(), "t1", b1, opts, 0)
	if err != nil || tx.Status != protocol.StatusRunning || len(tx.Branches) != 1 {
		t.Fatalf("first register with begin: %v, %+v", err, tx)
	}
	if n := st.commits.Load(); n != 1 {
		t.Fatalf("%d commits for begin+register, want 1", n)
	}
	// Repeating the first registration changes nothing; the second adds.
	if _, err := c.RegisterBranch(t.Context(), "t1", b1, opts, 0); err != nil {
		t.Fatal(err)
	}
	if tx, err = c.RegisterBranch(t.Context(), "t1", b2, opts, 0); err != nil || len(tx.Branches) != 2 {
		t.Fatalf("second register: %v, %d branches", err, len(tx.Branches))
	}
	if _, err := c.CommitTCC(t.Context(), "t1"); err != nil {
		t.Fatal(err)
	}
	if tx := waitFinal(t, c, "t1"); tx.Status != protocol.StatusSucceeded {
		t.Fatalf("status %s", tx.Status)
	}
	if caller.count("/stock/confirm") != 1 || caller.count("/pay/confirm") != 1 || caller.unsafe.Load() != 0 {
		t.Fatalf("calls %v", caller.calls)
	}
	// Without begin, an unknown gid is not found.
	if _, err := c.RegisterBranch(t.Context(), "nope", b1, nil, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("register on unknown gid without begin: %v, want ErrNotFound", err)
	}
}
