// Package tcc is the Try-Confirm-Cancel protocol as a pure state machine.
//
// The initiator opens the transaction (Submit), registers each branch
// (Register) before calling that branch's Try itself, and then reports
// Commit (every Try succeeded) or Rollback (one failed). The coordinator
// confirms every branch after Commit, and cancels every branch after
// Rollback, an operator Abort, or the deadline. Cancel must tolerate a
// branch whose Try never ran (the barrier records a null cancel). Confirms
// and cancels are retried until they succeed; past their budget the
// transaction is stuck until an operator retries it.
//
// A branch's Try handler may register more branches under the same gid
// (nested TCC); they are confirmed or cancelled with the rest.
package tcc

import (
	"fmt"
	"slices"

	p "github.com/concordtm/concord/internal/protocol"
)

var (
	trying     = []p.Status{p.StatusRunning}
	confirming = []p.Status{p.StatusConfirming}
	cancelling = []p.Status{p.StatusCancelling}
	stuck      = []p.Status{p.StatusStuck}
	toConfirm  = []p.Status{p.StatusConfirming, p.StatusSucceeded, p.StatusStuck}
	toCancel   = []p.Status{p.StatusCancelling, p.StatusAborted, p.StatusStuck}
	unchanged  = func(_ *p.Txn, _ p.Event, fx *p.Effects) error { fx.Unchanged(); return nil }
)

// Machine is the TCC transition table.
var Machine = &p.Machine{Mode: p.ModeTCC, Table: []p.Transition{
	{From: []p.Status{p.StatusNew}, On: p.EvSubmit, To: trying, Do: begin},
	{From: trying, On: p.EvRegister, To: trying, Do: register},
	{From: trying, On: p.EvCommit, To: toConfirm, Do: commit},
	{From: trying, On: p.EvRollback, To: toCancel, Do: rollback},
	{From: trying, On: p.EvAbort, To: toCancel, Do: rollback},
	{From: trying, On: p.EvTick, To: []p.Status{p.StatusRunning, p.StatusCancelling, p.StatusAborted, p.StatusStuck}, Do: trialTick},
	{From: trying, On: p.EvRecover, To: []p.Status{p.StatusRunning, p.StatusCancelling, p.StatusAborted, p.StatusStuck}, Do: trialTick},
	{From: trying, On: p.EvRetry, To: trying, Do: unchanged},

	{From: confirming, On: p.EvResult, To: toConfirm, Do: result},
	{From: confirming, On: p.EvTick, To: toConfirm, Do: tick},
	{From: confirming, On: p.EvRecover, To: toConfirm, Do: recoverStep},
	{From: confirming, On: p.EvRetry, To: toConfirm, Do: retry},
	{From: []p.Status{p.StatusConfirming, p.StatusSucceeded}, On: p.EvCommit, To: []p.Status{p.StatusConfirming, p.StatusSucceeded}, Do: unchanged},

	{From: cancelling, On: p.EvResult, To: toCancel, Do: result},
	{From: cancelling, On: p.EvTick, To: toCancel, Do: tick},
	{From: cancelling, On: p.EvRecover, To: toCancel, Do: recoverStep},
	{From: cancelling, On: p.EvRetry, To: toCancel, Do: retry},
	{From: []p.Status{p.StatusCancelling, p.StatusAborted}, On: p.EvRollback, To: []p.Status{p.StatusCancelling, p.StatusAborted}, Do: unchanged},

	{From: stuck, On: p.EvRetry, To: []p.Status{p.StatusConfirming, p.StatusSucceeded, p.StatusCancelling, p.StatusAborted, p.StatusStuck}, Do: retry},
	{From: stuck, On: p.EvResult, To: stuck, Do: result},
	{From: stuck, On: p.EvRecover, To: stuck, Do: p.RecoverStuck},
	{From: stuck, On: p.EvTick, To: stuck, Do: unchanged},
}}

// Step applies ev to t. See protocol.Machine.Step.
func Step(t p.Txn, ev p.Event) (p.Txn, []p.Effect, error) { return Machine.Step(t, ev) }

func begin(t *p.Txn, ev p.Event, fx *p.Effects) error {
	s := ev.(p.Submit)
	*t = s.Txn.Clone()
	t.Mode = p.ModeTCC
	// Branches given at begin are registered with it (one durable write).
	seen := map[string]bool{}
	for i := range t.Branches {
		b := &t.Branches[i]
		if b.ID == "" || seen[b.ID] {
			return fmt.Errorf("%w: empty or repeated branch id %q", p.ErrInvalidEvent, b.ID)
		}
		seen[b.ID] = true
		b.ForwardOp, b.BackwardOp = p.OpConfirm, p.OpCancel
		b.Fwd, b.Bwd = p.OpState{Status: p.OpIdle}, p.OpState{Status: p.OpIdle}
		b.History = nil
	}
	t.CreatedAt, t.UpdatedAt = s.Now, s.Now
	if t.Options.Timeout > 0 {
		t.Deadline = s.Now + t.Options.Timeout
	}
	t.Status = p.StatusRunning
	fx.Report(p.StatusRunning)
	p.ArmNext(t, fx, true)
	return nil
}

func register(t *p.Txn, ev p.Event, fx *p.Effects) error {
	r := ev.(p.Register)
	nb := r.Branch
	nb.ForwardOp, nb.BackwardOp = p.OpConfirm, p.OpCancel
	if i := t.Branch(nb.ID); i >= 0 {
		old := t.Branches[i]
		if old.ForwardURL == nb.ForwardURL && old.BackwardURL == nb.BackwardURL && string(old.Payload) == string(nb.Payload) {
			fx.Unchanged() // a repeated registration
			return nil
		}
		return fmt.Errorf("%w: branch %q is already registered in %s with different content", p.ErrConflict, nb.ID, t.GID)
	}
	if r.MaxBranches > 0 && len(t.Branches) >= r.MaxBranches {
		return fmt.Errorf("%w: %s already has %d branches, at most %d allowed", p.ErrInvalidEvent, t.GID, len(t.Branches), r.MaxBranches)
	}
	nb.Fwd, nb.Bwd = p.OpState{Status: p.OpIdle}, p.OpState{Status: p.OpIdle}
	nb.History, nb.After = nil, slices.Clone(nb.After)
	t.Branches = append(t.Branches, nb)
	return nil
}

func commit(t *p.Txn, ev p.Event, fx *p.Effects) error {
	p.Decide(t, p.StatusConfirming, ev.At(), "")
	advance(t, ev.At(), fx)
	return nil
}

func rollback(t *p.Txn, ev p.Event, fx *p.Effects) error {
	var reason string
	switch e := ev.(type) {
	case p.Rollback:
		reason = "rolled back by the initiator"
		if e.Reason != "" {
			reason += ": " + e.Reason
		}
	case p.Abort:
		reason = "aborted by operator"
		if e.Reason != "" {
			reason += ": " + e.Reason
		}
	}
	p.Decide(t, p.StatusCancelling, ev.At(), reason)
	advance(t, ev.At(), fx)
	return nil
}

// trialTick handles timers and restarts while the initiator is still
// trying: past the deadline the transaction cancels.
func trialTick(t *p.Txn, ev p.Event, fx *p.Effects) error {
	now := ev.At()
	if t.Deadline > 0 && now >= t.Deadline {
		p.Decide(t, p.StatusCancelling, now, "deadline exceeded")
		advance(t, now, fx)
		return nil
	}
	fx.Unchanged()
	p.ArmNext(t, fx, true)
	return nil
}

func result(t *p.Txn, ev p.Event, fx *p.Effects) error {
	r := ev.(p.Result)
	b, op, stale, err := p.ResultTarget(t, r)
	if err != nil {
		return err
	}
	before := t.Status
	if !stale {
		p.ApplyOutcome(t, b, op, r, false)
	}
	if t.Status != p.StatusStuck {
		advance(t, r.Now, fx)
	}
	// A confirm or cancel acknowledgement that is not the last needs no
	// write of its own: after a restart the coordinator resends every
	// confirm (or cancel) not known to be done, and the barrier absorbs
	// the repeat.
	if t.Status == before && (before == p.StatusConfirming || before == p.StatusCancelling) {
		fx.Defer()
	}
	return nil
}

func tick(t *p.Txn, ev p.Event, fx *p.Effects) error {
	if !p.DueRetries(t, ev.At(), fx, phaseOp(t)) {
		fx.Unchanged()
	}
	p.ArmNext(t, fx, false)
	return nil
}

func recoverStep(t *p.Txn, ev p.Event, fx *p.Effects) error {
	p.LoseInflight(t, ev.At())
	p.DueRetries(t, ev.At(), fx, phaseOp(t))
	advance(t, ev.At(), fx)
	return nil
}

func retry(t *p.Txn, ev p.Event, fx *p.Effects) error {
	p.RetryNow(t, ev.At(), fx, phaseOp)
	advance(t, ev.At(), fx)
	return nil
}

func phaseOp(t *p.Txn) func(b *p.Branch) *p.OpState {
	if t.Status == p.StatusConfirming {
		return func(b *p.Branch) *p.OpState { return &b.Fwd }
	}
	return func(b *p.Branch) *p.OpState { return &b.Bwd }
}

// advance starts every idle operation of the current phase and settles the
// transaction when all are done.
func advance(t *p.Txn, now int64, fx *p.Effects) {
	pick := phaseOp(t)
	done := 0
	var failed *p.Branch
	for i := range t.Branches {
		b := &t.Branches[i]
		op := pick(b)
		switch op.Status {
		case p.OpIdle:
			if op == &b.Fwd {
				p.StartForward(t, i, fx)
			} else {
				p.StartBackward(t, i, fx)
			}
		case p.OpDone:
			done++
		case p.OpFailed:
			failed = b
		}
	}
	if done == len(t.Branches) {
		if t.Status == p.StatusConfirming {
			t.Status = p.StatusSucceeded
		} else {
			t.Status = p.StatusAborted
		}
		fx.Report(t.Status)
		return
	}
	if failed != nil {
		op := pick(failed)
		p.Stick(t, fx, t.Status, fmt.Sprintf("%s of branch %s failed after %d attempts: %s", map[bool]string{true: "confirm", false: "cancel"}[t.Status == p.StatusConfirming], failed.ID, op.Attempts, op.Error))
		return
	}
	p.ArmNext(t, fx, false)
}
