// Package saga is the saga protocol as a pure state machine.
//
// A saga runs each branch's action in order (or concurrently, ordered by a
// dependency DAG). If every action succeeds the saga succeeds. If an action
// is rejected (a business "no"), keeps failing past its retry budget, or the
// deadline passes, the saga decides to abort and compensates, in reverse
// dependency order, every branch whose action may have run. Compensations
// must eventually succeed; one that keeps failing makes the saga stuck until
// an operator retries it.
//
// Step applies one event; Machine is the transition table.
package saga

import (
	"fmt"

	p "github.com/concordtm/concord/internal/protocol"
)

var (
	running      = []p.Status{p.StatusRunning}
	compensating = []p.Status{p.StatusCompensating}
	stuck        = []p.Status{p.StatusStuck}
	undecided    = []p.Status{p.StatusRunning, p.StatusCompensating, p.StatusSucceeded}
	unwinding    = []p.Status{p.StatusCompensating, p.StatusAborted, p.StatusStuck}
)

// Machine is the saga transition table.
var Machine = &p.Machine{Mode: p.ModeSaga, Table: []p.Transition{
	{From: []p.Status{p.StatusNew}, On: p.EvSubmit, To: undecided, Do: submit},
	{From: running, On: p.EvResult, To: []p.Status{p.StatusRunning, p.StatusCompensating, p.StatusSucceeded, p.StatusAborted}, Do: result},
	{From: running, On: p.EvTick, To: []p.Status{p.StatusRunning, p.StatusCompensating, p.StatusAborted}, Do: tick},
	{From: running, On: p.EvRecover, To: []p.Status{p.StatusRunning, p.StatusCompensating, p.StatusAborted}, Do: recoverStep},
	{From: running, On: p.EvRetry, To: running, Do: retry},
	{From: running, On: p.EvAbort, To: unwinding, Do: abort},
	{From: compensating, On: p.EvResult, To: unwinding, Do: result},
	{From: compensating, On: p.EvTick, To: unwinding, Do: tick},
	{From: compensating, On: p.EvRecover, To: unwinding, Do: recoverStep},
	{From: compensating, On: p.EvRetry, To: unwinding, Do: retry},
	{From: stuck, On: p.EvRetry, To: unwinding, Do: retry},
	{From: stuck, On: p.EvRecover, To: stuck, Do: p.RecoverStuck},
	{From: stuck, On: p.EvResult, To: stuck, Do: result},
	{From: stuck, On: p.EvTick, To: stuck, Do: func(_ *p.Txn, _ p.Event, fx *p.Effects) error { fx.Unchanged(); return nil }},
}}

// CompensateUnsure is the rule that a rejected action whose earlier call
// had an unknown outcome is compensated (see backward). It is a variable
// only so that the simulator and the property test can show what breaks
// without it (concord explore -unsafe-rule saga-skip-unsure); nothing else
// may turn it off.
var CompensateUnsure = true

// Step applies ev to t. See protocol.Machine.Step.
func Step(t p.Txn, ev p.Event) (p.Txn, []p.Effect, error) { return Machine.Step(t, ev) }

// deps returns the indexes of the branches whose actions must succeed
// before branch i's action starts.
func deps(t *p.Txn, i int) []int {
	if !t.Concurrent {
		if i == 0 {
			return nil
		}
		return []int{i - 1}
	}
	var out []int
	for _, id := range t.Branches[i].After {
		if j := t.Branch(id); j >= 0 {
			out = append(out, j)
		}
	}
	return out
}

func submit(t *p.Txn, ev p.Event, fx *p.Effects) error {
	s := ev.(p.Submit)
	*t = s.Txn.Clone()
	t.Mode = p.ModeSaga
	t.CreatedAt, t.UpdatedAt = s.Now, s.Now
	if t.Options.Timeout > 0 {
		t.Deadline = s.Now + t.Options.Timeout
	}
	for i := range t.Branches {
		b := &t.Branches[i]
		b.ForwardOp, b.BackwardOp = p.OpAction, p.OpCompensate
		b.Fwd, b.Bwd = p.OpState{Status: p.OpIdle}, p.OpState{Status: p.OpIdle}
		b.History = nil
	}
	if err := checkDAG(t); err != nil {
		return err
	}
	t.Status = p.StatusRunning
	fx.Report(p.StatusRunning)
	forward(t, s.Now, fx)
	return nil
}

// checkDAG rejects repeated branch ids, unknown dependencies and cycles.
func checkDAG(t *p.Txn) error {
	for i := range t.Branches {
		if j := t.Branch(t.Branches[i].ID); j != i {
			return fmt.Errorf("%w: branch id %q is used twice", p.ErrInvalidEvent, t.Branches[i].ID)
		}
	}
	state := make([]byte, len(t.Branches)) // 0 new, 1 visiting, 2 done
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case 1:
			return fmt.Errorf("%w: branch %q is part of a dependency cycle", p.ErrInvalidEvent, t.Branches[i].ID)
		case 2:
			return nil
		}
		state[i] = 1
		for _, id := range t.Branches[i].After {
			j := t.Branch(id)
			if j < 0 {
				return fmt.Errorf("%w: branch %q depends on unknown branch %q", p.ErrInvalidEvent, t.Branches[i].ID, id)
			}
			if err := visit(j); err != nil {
				return err
			}
		}
		state[i] = 2
		return nil
	}
	for i := range t.Branches {
		if err := visit(i); err != nil {
			return err
		}
	}
	return nil
}

func result(t *p.Txn, ev p.Event, fx *p.Effects) error {
	r := ev.(p.Result)
	b, op, stale, err := p.ResultTarget(t, r)
	if err != nil {
		return err
	}
	if !stale {
		p.ApplyOutcome(t, b, op, r, op == &b.Fwd)
	}
	advance(t, r.Now, fx)
	// An action's success that leaves the saga running needs no write of
	// its own, even though the step calls the next actions: after a
	// restart the coordinator re-runs every action not known to be done
	// (the barrier absorbs repeats), and, since it cannot tell how far
	// the lost steps got, a compensation then covers the idle branches
	// too (MaybeAhead). A saga of N branches costs two forced writes, its
	// acceptance and its outcome, instead of N+1.
	if !stale && op == &b.Fwd && r.Outcome == p.OutcomeSuccess && t.Status == p.StatusRunning {
		fx.DeferCalls()
	}
	return nil
}

func tick(t *p.Txn, ev p.Event, fx *p.Effects) error {
	now := ev.At()
	if t.Status == p.StatusRunning && t.Deadline > 0 && now >= t.Deadline {
		p.Decide(t, p.StatusCompensating, now, "deadline exceeded")
		advance(t, now, fx)
		return nil
	}
	if !p.DueRetries(t, now, fx, phaseOp(t)) {
		// Nothing due: a timer that fired early or was superseded.
		fx.Unchanged()
		p.ArmNext(t, fx, t.Status == p.StatusRunning)
		return nil
	}
	p.ArmNext(t, fx, t.Status == p.StatusRunning)
	return nil
}

func recoverStep(t *p.Txn, ev p.Event, fx *p.Effects) error {
	now := ev.At()
	p.LoseInflight(t, now)
	// Deferred steps (see result) may have called actions this state
	// shows as idle: such a call's outcome is unknown, and it may land
	// after a later attempt is refused.
	t.MaybeAhead = true
	for i := range t.Branches {
		if f := &t.Branches[i].Fwd; f.Status == p.OpIdle {
			f.Unsure = true
		}
	}
	if t.Status == p.StatusRunning && t.Deadline > 0 && now >= t.Deadline {
		p.Decide(t, p.StatusCompensating, now, "deadline exceeded")
	}
	p.DueRetries(t, now, fx, phaseOp(t))
	advance(t, now, fx)
	return nil
}

func retry(t *p.Txn, ev p.Event, fx *p.Effects) error {
	p.RetryNow(t, ev.At(), fx, phaseOp)
	advance(t, ev.At(), fx)
	return nil
}

func abort(t *p.Txn, ev p.Event, fx *p.Effects) error {
	a := ev.(p.Abort)
	reason := "aborted by operator"
	if a.Reason != "" {
		reason += ": " + a.Reason
	}
	p.Decide(t, p.StatusCompensating, a.Now, reason)
	advance(t, a.Now, fx)
	return nil
}

// phaseOp picks the operation the current phase drives.
func phaseOp(t *p.Txn) func(b *p.Branch) *p.OpState {
	if t.Status == p.StatusRunning {
		return func(b *p.Branch) *p.OpState { return &b.Fwd }
	}
	return func(b *p.Branch) *p.OpState { return &b.Bwd }
}

// advance moves the saga as far as it can go without new input.
func advance(t *p.Txn, now int64, fx *p.Effects) {
	if t.Status == p.StatusRunning {
		forward(t, now, fx)
		if t.Status == p.StatusRunning {
			return
		}
	}
	if t.Status == p.StatusCompensating {
		backward(t, now, fx)
	}
}

func forward(t *p.Txn, now int64, fx *p.Effects) {
	done := 0
	for i := range t.Branches {
		b := &t.Branches[i]
		switch b.Fwd.Status {
		case p.OpDone:
			done++
		case p.OpRejected:
			p.Decide(t, p.StatusCompensating, now, fmt.Sprintf("branch %s rejected: %s", b.ID, b.Fwd.Error))
		case p.OpFailed:
			p.Decide(t, p.StatusCompensating, now, fmt.Sprintf("branch %s failed after %d attempts: %s", b.ID, b.Fwd.Attempts, b.Fwd.Error))
		}
	}
	if t.Status != p.StatusRunning {
		backward(t, now, fx)
		return
	}
	if done == len(t.Branches) {
		p.Decide(t, p.StatusSucceeded, now, "")
		fx.Report(p.StatusSucceeded)
		return
	}
	for i := range t.Branches {
		if t.Branches[i].Fwd.Status != p.OpIdle {
			continue
		}
		ready := true
		for _, j := range deps(t, i) {
			if t.Branches[j].Fwd.Status != p.OpDone {
				ready = false
				break
			}
		}
		if ready {
			p.StartForward(t, i, fx)
		}
	}
	p.ArmNext(t, fx, true)
}

// backward compensates, in reverse dependency order, every branch whose
// action may have run. A branch whose action is still in flight is waited
// for (the call is bounded by the branch timeout). A branch whose action
// never started needs no compensation, and neither does one whose action
// was rejected with no earlier call of unknown outcome: the participant's
// "no" is the only call it ever got. A rejected action that is Unsure (an
// earlier call timed out, failed or was lost in a restart) is compensated:
// that earlier call may still be running and land after the refusal, and
// only a compensation undoes it (or, if it has not landed, the barrier's
// null compensation makes it refuse when it does). After a restart
// (MaybeAhead) an idle action may have been called before it, so it is
// compensated too.
func backward(t *p.Txn, now int64, fx *p.Effects) {
	n := len(t.Branches)
	for i := range t.Branches {
		b := &t.Branches[i]
		if b.Bwd.Status != p.OpIdle {
			continue
		}
		switch b.Fwd.Status {
		case p.OpIdle:
			if !t.MaybeAhead {
				b.Bwd.Status = p.OpSkipped
			}
		case p.OpRejected:
			if !b.Fwd.Unsure || !CompensateUnsure {
				b.Bwd.Status = p.OpSkipped
			}
		case p.OpRetrying:
			// Give up the forward retry: it may have happened, so compensate.
			b.Fwd.Status = p.OpFailed
		}
	}
	settled := 0
	var stuckOn *p.Branch
	for i := n - 1; i >= 0; i-- {
		b := &t.Branches[i]
		switch b.Bwd.Status {
		case p.OpDone, p.OpSkipped:
			settled++
			continue
		case p.OpFailed:
			stuckOn = b
			continue
		case p.OpIdle:
		default:
			continue // in flight or waiting to retry
		}
		if b.Fwd.Status == p.OpInflight || !dependentsUndone(t, i) {
			continue
		}
		p.StartBackward(t, i, fx)
	}
	if settled == n {
		t.Status = p.StatusAborted
		fx.Report(p.StatusAborted)
		return
	}
	if stuckOn != nil {
		p.Stick(t, fx, p.StatusCompensating, fmt.Sprintf("compensation of branch %s failed after %d attempts: %s", stuckOn.ID, stuckOn.Bwd.Attempts, stuckOn.Bwd.Error))
		return
	}
	p.ArmNext(t, fx, false)
}

// dependentsUndone reports whether every branch that ran after branch i
// (depends on it) has finished compensating or needs none.
func dependentsUndone(t *p.Txn, i int) bool {
	for j := range t.Branches {
		if j == i {
			continue
		}
		for _, d := range deps(t, j) {
			if d == i {
				s := t.Branches[j].Bwd.Status
				if s != p.OpDone && s != p.OpSkipped {
					return false
				}
			}
		}
	}
	return true
}
