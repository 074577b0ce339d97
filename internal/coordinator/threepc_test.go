package coordinator

import (
	"testing"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store/memstore"
)

func threeBranches(gid string) ThreePCSpec {
	return ThreePCSpec{GID: gid, Branches: []protocol.Branch{
		{ID: "a", ForwardURL: "http://p/a"},
		{ID: "b", ForwardURL: "http://p/b"},
	}}
}

func TestThreePCCommitsThroughEveryPhase(t *testing.T) {
	st := memstore.New()
	c, caller := newTestCoordinator(t, st, nil)
	if _, err := c.SubmitThreePC(t.Context(), threeBranches("3a")); err != nil {
		t.Fatal(err)
	}
	tx := waitFinal(t, c, "3a")
	if tx.Status != protocol.StatusSucceeded || tx.Mode != protocol.ModeThreePC {
		t.Fatalf("%s transaction %s, want 3pc succeeded", tx.Mode, tx.Status)
	}
	for _, op := range []string{"can-commit", "pre-commit", "do-commit"} {
		if n := caller.count("/" + op); n != 2 {
			t.Errorf("%d %s calls, want 2", n, op)
		}
	}
	if n := caller.count("/abort"); n != 0 {
		t.Errorf("%d abort calls, want none", n)
	}
	if n := caller.unsafe.Load(); n != 0 {
		t.Fatalf("%d calls reached a participant before the state that led to them was durable", n)
	}
	for _, b := range tx.Branches {
		if b.Fwd.Status != protocol.OpDone || b.Mid.Status != protocol.OpDone || b.Bwd.Status != protocol.OpDone || b.BackwardOp != protocol.OpDoCommit {
			t.Errorf("branch %s: %+v", b.ID, b)
		}
	}
	if d, err := c.Decision(t.Context(), "3a"); err != nil || d != DecisionCommit {
		t.Fatalf("decision %q, %v; want commit", d, err)
	}
}

func TestThreePCNoVoteAbortsBeforeAnyWork(t *testing.T) {
	st := memstore.New()
	c, caller := newTestCoordinator(t, st, func(gid string, call protocol.Call) protocol.Outcome {
		if call.Branch == "b" && call.Op == protocol.OpCanCommit {
			return protocol.OutcomeRejected
		}
		return protocol.OutcomeSuccess
	})
	if _, err := c.SubmitThreePC(t.Context(), threeBranches("3b")); err != nil {
		t.Fatal(err)
	}
	tx := waitFinal(t, c, "3b")
	if tx.Status != protocol.StatusAborted {
		t.Fatalf("status %s, want aborted", tx.Status)
	}
	if n := caller.count("/pre-commit") + caller.count("/do-commit"); n != 0 {
		t.Fatalf("%d pre-commit or do-commit calls after a no vote, want none", n)
	}
	if d, err := c.Decision(t.Context(), "3b"); err != nil || d != DecisionAbort {
		t.Fatalf("decision %q, %v; want abort", d, err)
	}
	rec, err := st.Get(t.Context(), "3b")
	if err != nil || !rec.Finished || rec.Status != "aborted" {
		t.Fatalf("stored record %+v, err %v: want finished aborted", rec, err)
	}
}

func TestThreePCRefusedPreCommitAborts(t *testing.T) {
	c, caller := newTestCoordinator(t, memstore.New(), func(gid string, call protocol.Call) protocol.Outcome {
		if call.Branch == "a" && call.Op == protocol.OpPreCommit {
			return protocol.OutcomeRejected
		}
		return protocol.OutcomeSuccess
	})
	if _, err := c.SubmitThreePC(t.Context(), threeBranches("3c")); err != nil {
		t.Fatal(err)
	}
	tx := waitFinal(t, c, "3c")
	if tx.Status != protocol.StatusAborted {
		t.Fatalf("status %s, want aborted", tx.Status)
	}
	if n := caller.count("/do-commit"); n != 0 {
		t.Fatalf("%d do-commit calls, want none", n)
	}
}

func TestThreePCRecoversInPreCommit(t *testing.T) {
	st := memstore.New()
	// A first coordinator gets every can-commit yes and leaves the
	// pre-commits unanswered (unknown, retried later) when it closes.
	block, precommitting := make(chan struct{}), make(chan struct{}, 2)
	c1, _ := newTestCoordinator(t, st, func(gid string, call protocol.Call) protocol.Outcome {
		if call.Op == protocol.OpPreCommit {
			precommitting <- struct{}{} // a call follows its durable state
			<-block
			return protocol.OutcomeUnknown
		}
		return protocol.OutcomeSuccess
	})
	spec := threeBranches("3d")
	if _, err := c1.SubmitThreePC(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	<-precommitting
	if rec, err := st.Get(t.Context(), "3d"); err != nil || rec.Status != string(protocol.StatusPreCommitting) {
		t.Fatalf("stored %+v, %v: want precommitting", rec, err)
	}
	close(block)
	c1.Close()

	c2, caller := newTestCoordinator(t, st, nil)
	tx := waitFinal(t, c2, "3d")
	if tx.Status != protocol.StatusSucceeded {
		t.Fatalf("after restart in precommitting: %s, want succeeded (%s)", tx.Status, tx.Reason)
	}
	if caller.count("/pre-commit") == 0 {
		t.Fatal("the restarted coordinator did not resend pre-commit")
	}
}
