package threepc_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	p "github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/threepc"
)

func newParticipant(termination bool) threepc.Participant {
	return threepc.Participant{ID: "b", Peers: []string{"c"}, Termination: termination, VoteTimeout: 10, DecisionTimeout: 20, AskTimeout: 5}
}

// run steps pt through evs and renders the state and effects of each step.
func run(t *testing.T, pt threepc.Participant, evs ...p.PEvent) (threepc.Participant, string) {
	t.Helper()
	var sb strings.Builder
	for _, ev := range evs {
		before := fmt.Sprint(pt)
		n, fx, err := pt.Step(ev)
		if err != nil {
			t.Fatalf("%T: %v", ev, err)
		}
		if fmt.Sprint(pt) != before {
			t.Fatalf("Step modified its receiver")
		}
		pt = n
		fmt.Fprintf(&sb, "%s %v;", pt.State, fx)
	}
	return pt, sb.String()
}

func TestParticipantTimeouts(t *testing.T) {
	// Voted, no pre-commit: abort on the timeout.
	pt, _ := run(t, newParticipant(false), p.Message{Now: 1, Op: p.OpCanCommit, Yes: true}, p.Timeout{Now: 11})
	if pt.State != p.PAborted || pt.DecidedBy != "timeout" {
		t.Errorf("voted + timeout: %s by %s", pt.State, pt.DecidedBy)
	}
	// Pre-committed, no do-commit: commit on the timeout.
	pt, out := run(t, newParticipant(false), p.Message{Now: 1, Op: p.OpCanCommit, Yes: true}, p.Message{Now: 2, Op: p.OpPreCommit}, p.Timeout{Now: 22})
	if pt.State != p.PCommitted || pt.DecidedBy != "timeout" {
		t.Errorf("precommitted + timeout: %s by %s (%s)", pt.State, pt.DecidedBy, out)
	}
	// The work is logged durably before the acknowledgement.
	if !strings.Contains(out, "precommitted [{} {} {pre-commit success} {22}]") {
		t.Errorf("pre-commit effects: %s", out)
	}
	// Pre-committed, then abort: undo.
	pt, _ = run(t, newParticipant(false), p.Message{Now: 1, Op: p.OpCanCommit, Yes: true}, p.Message{Now: 2, Op: p.OpPreCommit}, p.Message{Now: 3, Op: p.OpAbort})
	if pt.State != p.PAborted {
		t.Errorf("precommitted + abort: %s", pt.State)
	}
	// A restart forgets a vote but not a pre-commit.
	pt, _ = run(t, newParticipant(false), p.Message{Now: 1, Op: p.OpCanCommit, Yes: true}, p.Restart{Now: 2}, p.Message{Now: 3, Op: p.OpPreCommit})
	if pt.State != p.PAborted {
		t.Errorf("pre-commit after a forgotten vote: %s", pt.State)
	}
}

func TestParticipantTermination(t *testing.T) {
	pre := []p.PEvent{p.Message{Now: 1, Op: p.OpCanCommit, Yes: true}, p.Message{Now: 2, Op: p.OpPreCommit}, p.Timeout{Now: 22}}
	for _, c := range []struct {
		peer p.PState
		want p.PState
	}{
		{p.PCommitted, p.PCommitted}, {p.PAborted, p.PAborted}, {p.PVoted, p.PAborted},
		{p.PInit, p.PAborted}, {p.PPreCommitted, p.PCommitted},
	} {
		pt, out := run(t, newParticipant(true), append(pre, p.PeerAnswer{Now: 23, From: "c", State: c.peer})...)
		if pt.State != c.want || pt.DecidedBy != "peers" {
			t.Errorf("peer %s: %s by %q, want %s (%s)", c.peer, pt.State, pt.DecidedBy, c.want, out)
		}
	}
	// No answer (the peer crashed, or a partition): decide alone when the
	// time to ask is over; precommitted commits, voted aborts.
	pt, _ := run(t, newParticipant(true), append(pre, p.Timeout{Now: 27})...)
	if pt.State != p.PCommitted {
		t.Errorf("precommitted, no answers: %s", pt.State)
	}
	pt, _ = run(t, newParticipant(true), p.Message{Now: 1, Op: p.OpCanCommit, Yes: true}, p.Timeout{Now: 11}, p.Timeout{Now: 16})
	if pt.State != p.PAborted {
		t.Errorf("voted, no answers: %s", pt.State)
	}
	// An answer from a stranger is ignored.
	pt, _ = run(t, newParticipant(true), append(pre, p.PeerAnswer{Now: 23, From: "x", State: p.PAborted})...)
	if pt.State != p.PPreCommitted || !pt.Asking {
		t.Errorf("stranger's answer: %s asking=%v", pt.State, pt.Asking)
	}
}

func TestParticipantRefusals(t *testing.T) {
	pt, out := run(t, newParticipant(false), p.Message{Now: 1, Op: p.OpAbort}, p.Message{Now: 2, Op: p.OpCanCommit, Yes: true}, p.Message{Now: 3, Op: p.OpPreCommit}, p.Message{Now: 4, Op: p.OpDoCommit})
	if pt.State != p.PAborted || strings.Count(out, "rejected") != 3 {
		t.Errorf("after an early abort: %s %s", pt.State, out)
	}
	if _, _, err := newParticipant(false).Step(p.Message{Now: 1, Op: p.OpPrepare}); err == nil {
		t.Errorf("a 2pc prepare was accepted")
	}
}

// A branch of another mode has no pre-commit, and its JSON is what it was
// before 3PC existed.
func TestBranchJSONWithoutMid(t *testing.T) {
	b, err := json.Marshal(p.Branch{ID: "a", ForwardOp: p.OpPrepare, Fwd: p.OpState{Status: p.OpDone}, Bwd: p.OpState{Status: p.OpIdle}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "mid") {
		t.Errorf("a 2pc branch's JSON mentions mid: %s", b)
	}
	txn, _, err := threepc.Step(p.Txn{}, p.Submit{Now: 1, Txn: p.Txn{GID: "g", Branches: []p.Branch{{ID: "a", ForwardURL: "u"}}}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(txn.Branches[0])
	var back p.Branch
	if err := json.Unmarshal(b, &back); err != nil || back.MidOp != p.OpPreCommit || back.Mid.Status != p.OpIdle {
		t.Errorf("3pc branch round trip: %s -> %+v %v", b, back, err)
	}
}
