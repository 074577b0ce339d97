package coordinator

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store/memstore"
	"github.com/concordtm/concord/internal/testenv"
)

func sharedPair(t *testing.T, ttl time.Duration) (*memstore.Store, *Coordinator, *Coordinator, *scriptedCaller) {
	st := memstore.New()
	caller := &scriptedCaller{store: st}
	mk := func(name string) *Coordinator {
		c := New(Config{Caller: caller, Shared: &SharedConfig{Instance: name, LeaseTTL: ttl, ClaimInterval: ttl / 4}}, st)
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return st, mk("a"), mk("b"), caller
}

// A request for a transaction another instance drives takes it over with a
// fenced write; the old owner's next write conflicts and it lets go.
func TestSharedAdoptFencesTheOldOwner(t *testing.T) {
	st, a, b, _ := sharedPair(t, 10*time.Second)
	ctx := t.Context()
	if _, err := a.BeginTCC(ctx, "g1", protocol.Options{}); err != nil {
		t.Fatal(err)
	}
	br := protocol.Branch{ID: "1", ForwardURL: "http://p/confirm", BackwardURL: "http://p/cancel"}
	if _, err := b.RegisterBranch(ctx, "g1", br, nil, 10); err != nil {
		t.Fatalf("register through b: %v", err)
	}
	rec, err := st.Get(ctx, "g1")
	if err != nil || rec.Owner != "b" {
		t.Fatalf("after b's register the owner is %q (%v), want b", rec.Owner, err)
	}
	// a still holds its stale copy (without branch 1); its write must not
	// land. The API call does not fail: a lets go of its copy, takes the
	// transaction over again from the store, and registers there.
	if _, err := a.RegisterBranch(ctx, "g1", protocol.Branch{ID: "2", ForwardURL: "http://p/c2", BackwardURL: "http://p/x2"}, nil, 10); err != nil {
		t.Fatalf("register through a with a stale copy: %v", err)
	}
	rec, err = st.Get(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := decode(rec.Data)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Owner != "a" || len(stored.Branches) != 2 || stored.Branch("1") < 0 || stored.Branch("2") < 0 {
		t.Fatalf("after a's register: owner %q, branches %+v; want a with branches 1 and 2 (a's stale write would have lost 1)", rec.Owner, stored.Branches)
	}
	// b's copy is stale now in turn: its commit takes the transaction over
	// again and commits.
	if _, err := b.CommitTCC(ctx, "g1"); err != nil {
		t.Fatalf("commit through b with a stale copy: %v", err)
	}
	if rec, err := st.Get(ctx, "g1"); err != nil || rec.Owner != "b" {
		t.Fatalf("after b's commit the owner is %q (%v), want b", rec.Owner, err)
	}
	tx, err := a.Wait(ctx, "g1")
	if err != nil || tx.Status != protocol.StatusSucceeded || len(tx.Branches) != 2 {
		t.Fatalf("final: %s with %d branches (%v)", tx.Status, len(tx.Branches), err)
	}
}

// Two instances creating the same gid at once: one creates it, the other
// returns it (same content) or refuses it (different content).
func TestSharedCreateRace(t *testing.T) {
	_, a, b, _ := sharedPair(t, 10*time.Second)
	ctx := t.Context()
	spec := SagaSpec{GID: "race", Branches: []protocol.Branch{{ID: "1", ForwardURL: "http://p/a", BackwardURL: "http://p/c"}}}
	errs := make(chan error, 2)
	for _, c := range []*Coordinator{a, b} {
		go func() {
			_, err := c.SubmitSaga(ctx, spec)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("submit of the same saga on two instances: %v", err)
		}
	}
	other := spec
	other.Branches = []protocol.Branch{{ID: "1", ForwardURL: "http://p/other", BackwardURL: "http://p/c"}}
	if _, err := b.SubmitSaga(ctx, other); !errors.Is(err, ErrGIDConflict) {
		t.Fatalf("different saga under the same gid: %v, want ErrGIDConflict", err)
	}
	tx, err := b.Wait(ctx, "race")
	if err != nil || tx.Status != protocol.StatusSucceeded {
		t.Fatalf("final %s (%v)", tx.Status, err)
	}
}

// When an instance stops heartbeating, another claims its unfinished
// transactions after the lease and finishes them.
func TestSharedClaimAfterLease(t *testing.T) {
	st, a, b, caller := sharedPair(t, 400*time.Millisecond)
	ctx := t.Context()
	hold := make(chan struct{})
	caller.answer = func(gid string, c protocol.Call) protocol.Outcome {
		if c.Op == protocol.OpAction && c.Branch == "1" {
			select {
			case <-hold: // a's calls hang until it is gone
			case <-ctx.Done():
				return protocol.OutcomeUnknown
			}
		}
		return protocol.OutcomeSuccess
	}
	if _, err := a.SubmitSaga(ctx, SagaSpec{GID: "orphan", Branches: []protocol.Branch{
		{ID: "1", ForwardURL: "http://p/a", BackwardURL: "http://p/c"}}, Options: protocol.Options{RetryInitial: int64(time.Hour), RetryMax: int64(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	// a dies without a word: its loops stop, its lease runs out.
	a.cancel()
	close(hold)
	start := time.Now()
	testenv.Eventually(t, 10*time.Second, "the orphan finished", func() bool {
		rec, err := st.Get(ctx, "orphan")
		return err == nil && rec.Finished
	})
	took := time.Since(start)
	if rec, err := st.Get(ctx, "orphan"); err != nil || rec.Owner != b.cfg.Shared.Instance {
		t.Fatalf("finished by %q (%v), want b", rec.Owner, err)
	}
	if took < 300*time.Millisecond {
		t.Errorf("taken over after %v, before a's lease could have run out", took)
	}
}

// A 2PC branch that voted yes and waits too long for phase 2 raises one
// in-doubt alert, not one per check. The clock is synctest's: the test
// lets the alert's threshold and then many more checks pass, exactly.
func TestInDoubtAlert(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memstore.New()
		var mu sync.Mutex
		var alerts []Alert
		caller := &scriptedCaller{store: st, answer: func(gid string, c protocol.Call) protocol.Outcome {
			if c.Op == protocol.OpCommit {
				return protocol.OutcomeUnknown // phase 2 keeps failing
			}
			return protocol.OutcomeSuccess
		}}
		const threshold = 150 * time.Millisecond // checked every threshold/4
		c := New(Config{Caller: caller, InDoubtAlert: threshold, Listener: Listener{Alerted: func(a Alert) {
			mu.Lock()
			alerts = append(alerts, a)
			mu.Unlock()
		}}}, st)
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err := c.SubmitTwoPC(t.Context(), TwoPCSpec{GID: "doubt", Branches: []protocol.Branch{{ID: "1", ForwardURL: "http://p/1"}},
			Options: protocol.Options{RetryInitial: int64(20 * time.Millisecond), RetryMax: int64(50 * time.Millisecond), MaxAttempts: 1000, MaxTotalAttempts: 100000}})
		if err != nil {
			t.Fatal(err)
		}
		inDoubt := func() (n int) {
			mu.Lock()
			defer mu.Unlock()
			for _, a := range alerts {
				if a.Kind == "in-doubt" && a.GID == "doubt" {
					n++
				}
			}
			return n
		}
		// Virtual time: each Sleep returns once every goroutine of the
		// coordinator is blocked at the new instant.
		time.Sleep(threshold / 2)
		synctest.Wait()
		if n := inDoubt(); n != 0 {
			t.Fatalf("%d in-doubt alerts before the branch waited %v", n, threshold)
		}
		time.Sleep(threshold + threshold/2) // the threshold and then 4 more checks
		synctest.Wait()
		if n := inDoubt(); n != 1 {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%d in-doubt alerts for one transaction, want exactly 1 (all: %+v)", n, alerts)
		}
		time.Sleep(20 * threshold) // 80 more checks
		synctest.Wait()
		if n := inDoubt(); n != 1 {
			t.Fatalf("%d in-doubt alerts after 80 more checks, want still 1", n)
		}
	})
}
