package twopc_test

import (
	"testing"

	p "github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/twopc"
)

func steps(t *testing.T, pt twopc.Participant, evs ...p.PEvent) (twopc.Participant, []p.Effect) {
	t.Helper()
	var fx []p.Effect
	for _, ev := range evs {
		var err error
		pt, fx, err = pt.Step(ev)
		if err != nil {
			t.Fatal(err)
		}
	}
	return pt, fx
}

func TestParticipantBlocksWithoutTheCoordinator(t *testing.T) {
	pt := twopc.Participant{ID: "a", Peers: []string{"b"}, DecisionTimeout: 10}
	pt, fx := steps(t, pt, p.Message{Now: 1, Op: p.OpPrepare, Yes: true})
	if pt.State != p.PVoted || len(fx) != 4 || fx[1] != p.Effect(p.Persist{}) {
		t.Fatalf("prepare: %s %v", pt.State, fx)
	}
	// Timeouts only ask the coordinator; a pending answer changes nothing.
	pt, fx = steps(t, pt, p.Timeout{Now: 11}, p.DecisionAnswer{Now: 12, Decision: p.DecisionPending}, p.Timeout{Now: 21})
	if pt.State != p.PVoted || fx[0] != p.Effect(p.AskCoordinator{}) {
		t.Fatalf("after timeouts: %s %v", pt.State, fx)
	}
	pt, _ = steps(t, pt, p.DecisionAnswer{Now: 30, Decision: p.DecisionCommit})
	if pt.State != p.PCommitted {
		t.Fatalf("after the answer: %s", pt.State)
	}
}

func TestParticipantCooperativeTermination(t *testing.T) {
	pt := twopc.Participant{ID: "a", Peers: []string{"b", "c"}, Termination: true, DecisionTimeout: 10}
	voted, fx := steps(t, pt, p.Message{Now: 1, Op: p.OpPrepare, Yes: true}, p.Timeout{Now: 11})
	if len(fx) != 3 || fx[1] != p.Effect(p.AskPeers{}) {
		t.Fatalf("timeout: %v", fx)
	}
	// Another uncertain peer teaches nothing; one that knows settles it.
	got, _ := steps(t, voted, p.PeerAnswer{Now: 12, From: "b", State: p.PVoted})
	if got.State != p.PVoted {
		t.Errorf("uncertain peer: %s", got.State)
	}
	got, _ = steps(t, voted, p.PeerAnswer{Now: 12, From: "c", State: p.PCommitted})
	if got.State != p.PCommitted || got.DecidedBy != "peers" {
		t.Errorf("committed peer: %s", got.State)
	}
	// A peer that has not voted aborts when asked, and says so.
	peer, fx := steps(t, twopc.Participant{ID: "c", Peers: []string{"a"}}, p.PeerQuery{Now: 12, From: "a"})
	if peer.State != p.PAborted || fx[len(fx)-1] != p.Effect(p.AnswerPeer{To: "a", State: p.PAborted}) {
		t.Errorf("unvoted peer: %s %v", peer.State, fx)
	}
	got, _ = steps(t, voted, p.PeerAnswer{Now: 13, From: "c", State: p.PAborted})
	if got.State != p.PAborted {
		t.Errorf("aborted peer: %s", got.State)
	}
	// The late prepare is refused.
	_, fx = steps(t, peer, p.Message{Now: 14, Op: p.OpPrepare, Yes: true})
	if fx[0] != p.Effect(p.Reply{Op: p.OpPrepare, Outcome: p.OutcomeRejected}) {
		t.Errorf("prepare after aborting: %v", fx)
	}
}
