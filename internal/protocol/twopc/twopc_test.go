package twopc_test

import (
	"errors"
	"testing"

	p "github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/twopc"
)

// The behaviour is covered by the scripts, the table walk and the random
// runs in package protocol; these check what those harnesses cannot reach.

func submitted(t *testing.T, branches ...p.Branch) p.Txn {
	t.Helper()
	txn, _, err := twopc.Step(p.Txn{}, p.Submit{Now: 1, Txn: p.Txn{
		GID: "g", Options: p.Options{MaxAttempts: 3, MaxTotalAttempts: 10, RetryInitial: 100},
		Branches: branches,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return txn
}

func TestSubmitOneURL(t *testing.T) {
	txn := submitted(t, p.Branch{ID: "a", ForwardURL: "http://a"}, p.Branch{ID: "b", ForwardURL: "http://b", BackwardURL: "http://b"})
	for _, b := range txn.Branches {
		if b.BackwardURL != b.ForwardURL || b.ForwardOp != p.OpPrepare || b.BackwardOp != "" {
			t.Errorf("branch %s: %s %s / %s %q", b.ID, b.ForwardOp, b.ForwardURL, b.BackwardURL, b.BackwardOp)
		}
	}
	_, _, err := twopc.Step(p.Txn{}, p.Submit{Now: 1, Txn: p.Txn{GID: "g", Branches: []p.Branch{{ID: "a", ForwardURL: "http://a/prepare", BackwardURL: "http://a/rollback"}}}})
	if !errors.Is(err, p.ErrInvalidEvent) {
		t.Errorf("two URLs: got %v, want ErrInvalidEvent", err)
	}
}

// A participant may answer read-only only to a prepare; to a commit it is
// not an acknowledgement, and the commit is retried.
func TestReadOnlyCommitIsRetried(t *testing.T) {
	txn := submitted(t, p.Branch{ID: "a", ForwardURL: "u"})
	txn, fx, err := twopc.Step(txn, p.Result{Now: 2, Branch: "a", Op: p.OpPrepare, Attempt: 1, Outcome: p.OutcomeSuccess})
	if err != nil {
		t.Fatal(err)
	}
	// The decision is written before the commit goes out.
	if len(fx) < 2 || fx[0] != p.Effect(p.Persist{}) {
		t.Fatalf("commit decision effects: %v", fx)
	}
	txn, _, err = twopc.Step(txn, p.Result{Now: 3, Branch: "a", Op: p.OpCommit, Attempt: 1, Outcome: p.OutcomeReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	if b := txn.Branches[0]; txn.Status != p.StatusCommitting || b.Bwd.Status != p.OpRetrying || b.Bwd.Error == "" {
		t.Errorf("after a read-only commit answer: %s, commit %s %q", txn.Status, b.Bwd.Status, b.Bwd.Error)
	}
}
