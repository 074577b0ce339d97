package twopc

import (
	"fmt"

	p "github.com/concordtm/concord/internal/protocol"
)

var (
	preparing  = []p.Status{p.StatusRunning}
	committing = []p.Status{p.StatusCommitting}
	stuck      = []p.Status{p.StatusStuck}
	aborted    = []p.Status{p.StatusAborted}
	unchanged  = func(_ *p.Txn, _ p.Event, fx *p.Effects) error { fx.Unchanged(); return nil }
)

// Machine is the two-phase commit transition table.
var Machine = &p.Machine{Mode: p.ModeTwoPC, Table: []p.Transition{
	{From: []p.Status{p.StatusNew}, On: p.EvSubmit, To: []p.Status{p.StatusRunning, p.StatusSucceeded}, Do: submit},
	{From: preparing, On: p.EvResult, To: []p.Status{p.StatusRunning, p.StatusCommitting, p.StatusSucceeded, p.StatusAborted}, Do: result},
	{From: preparing, On: p.EvTick, To: []p.Status{p.StatusRunning, p.StatusAborted}, Do: tick},
	{From: preparing, On: p.EvRecover, To: aborted, Do: recoverUndecided},
	{From: preparing, On: p.EvRetry, To: preparing, Do: retry},
	{From: preparing, On: p.EvAbort, To: aborted, Do: operatorAbort},

	{From: committing, On: p.EvResult, To: []p.Status{p.StatusCommitting, p.StatusSucceeded, p.StatusStuck}, Do: result},
	{From: committing, On: p.EvTick, To: committing, Do: tick},
	{From: committing, On: p.EvRecover, To: committing, Do: recoverCommitting},
	{From: committing, On: p.EvRetry, To: committing, Do: retry},

	{From: stuck, On: p.EvRetry, To: committing, Do: retry},
	{From: stuck, On: p.EvResult, To: stuck, Do: result},
	{From: stuck, On: p.EvRecover, To: stuck, Do: p.RecoverStuck},
	{From: stuck, On: p.EvTick, To: stuck, Do: unchanged},
}}

// Step applies ev to t. See protocol.Machine.Step.
func Step(t p.Txn, ev p.Event) (p.Txn, []p.Effect, error) { return Machine.Step(t, ev) }

// submit checks the branches and sends every prepare at once.
func submit(t *p.Txn, ev p.Event, fx *p.Effects) error {
	s := ev.(p.Submit)
	*t = s.Txn.Clone()
	t.Mode = p.ModeTwoPC
	if err := p.CheckVotingBranches(t); err != nil {
		return err
	}
	for i := range t.Branches {
		b := &t.Branches[i]
		b.ForwardOp, b.BackwardOp = p.OpPrepare, "" // phase 2's op is set at the decision
		b.Fwd, b.Bwd = p.OpState{Status: p.OpIdle}, p.OpState{Status: p.OpIdle}
	}
	t.CreatedAt, t.UpdatedAt = s.Now, s.Now
	if t.Options.Timeout > 0 {
		t.Deadline = s.Now + t.Options.Timeout
	}
	t.Status = p.StatusRunning
	fx.Report(p.StatusRunning)
	for i := range t.Branches {
		p.StartForward(t, i, fx)
	}
	count(t, s.Now, fx) // no branches: commits at once
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
		apply(t, b, op, r)
	}
	switch t.Status {
	case p.StatusRunning:
		count(t, r.Now, fx)
	case p.StatusCommitting:
		phase2(t, fx)
	}
	// A vote that decides nothing, or a commit acknowledgement that is not
	// the last, needs no write of its own: a restart before the decision
	// aborts whatever the votes were, and a restart while committing
	// resends the commit (participants' commits are idempotent).
	if t.Status == before && (before == p.StatusRunning || before == p.StatusCommitting) {
		fx.Defer()
	}
	return nil
}

// apply records a non-stale result. A read-only vote is a yes that skips
// phase 2. A prepare may be refused (a no); a commit may not, so a refused
// commit, like one whose outcome is unknown, is retried.
func apply(t *p.Txn, b *p.Branch, op *p.OpState, r p.Result) {
	prepare := op == &b.Fwd
	if r.Outcome == p.OutcomeReadOnly {
		if prepare {
			r.Outcome = p.OutcomeSuccess
			p.ApplyOutcome(t, b, op, r, true)
			b.Bwd.Status = p.OpSkipped
			return
		}
		r.Outcome = p.OutcomeUnknown
		r.Error = "answered read-only to " + string(b.BackwardOp) + ", which is not a vote: " + r.Error
	}
	p.ApplyOutcome(t, b, op, r, prepare)
}

func tick(t *p.Txn, ev p.Event, fx *p.Effects) error {
	now := ev.At()
	voting := t.Status == p.StatusRunning
	if voting && t.Deadline > 0 && now >= t.Deadline {
		abort(t, now, "deadline exceeded", fx)
		return nil
	}
	if !p.DueRetries(t, now, fx, phaseOp(t)) {
		// Nothing due: a timer that fired early or was superseded.
		fx.Unchanged()
	}
	p.ArmNext(t, fx, voting)
	return nil
}

// recoverUndecided aborts a transaction the coordinator had not decided
// when it stopped (presumed abort). Prepares that were in flight may have
// succeeded, so those branches are sent the abort too.
func recoverUndecided(t *p.Txn, ev p.Event, fx *p.Effects) error {
	p.LoseInflight(t, ev.At())
	abort(t, ev.At(), "coordinator restarted before deciding (presumed abort)", fx)
	return nil
}

// recoverCommitting resends the commit, now, to every branch that has not
// acknowledged it.
func recoverCommitting(t *p.Txn, ev p.Event, fx *p.Effects) error {
	now := ev.At()
	p.LoseInflight(t, now)
	for i := range t.Branches {
		if b := &t.Branches[i]; b.Bwd.Status == p.OpRetrying {
			b.Bwd.NextAt = now
		}
	}
	p.DueRetries(t, now, fx, phaseOp(t))
	phase2(t, fx)
	return nil
}

func retry(t *p.Txn, ev p.Event, fx *p.Effects) error {
	p.RetryNow(t, ev.At(), fx, phaseOp)
	switch t.Status {
	case p.StatusRunning:
		count(t, ev.At(), fx)
	case p.StatusCommitting:
		phase2(t, fx)
	}
	return nil
}

func operatorAbort(t *p.Txn, ev p.Event, fx *p.Effects) error {
	a := ev.(p.Abort)
	reason := "aborted by operator"
	if a.Reason != "" {
		reason += ": " + a.Reason
	}
	abort(t, a.Now, reason, fx)
	return nil
}

// phaseOp picks the operation the current phase drives: the prepare while
// voting, phase 2 after the decision.
func phaseOp(t *p.Txn) func(b *p.Branch) *p.OpState {
	if t.Status == p.StatusRunning {
		return func(b *p.Branch) *p.OpState { return &b.Fwd }
	}
	return func(b *p.Branch) *p.OpState { return &b.Bwd }
}

// count tallies the votes: the first no (a refusal, or a prepare that kept
// failing past its budget) aborts; yes or read-only from every branch
// commits; otherwise the vote goes on until the next retry or the deadline.
func count(t *p.Txn, now int64, fx *p.Effects) {
	yes := 0
	for i := range t.Branches {
		b := &t.Branches[i]
		switch b.Fwd.Status {
		case p.OpDone:
			yes++
		case p.OpRejected:
			abort(t, now, fmt.Sprintf("branch %s voted no: %s", b.ID, b.Fwd.Error), fx)
			return
		case p.OpFailed:
			abort(t, now, fmt.Sprintf("prepare of branch %s failed after %d attempts: %s", b.ID, b.Fwd.Attempts, b.Fwd.Error), fx)
			return
		}
	}
	if yes < len(t.Branches) {
		p.ArmNext(t, fx, true)
		return
	}
	// The decision. Step writes it before any commit call goes out.
	p.Decide(t, p.StatusCommitting, now, "")
	phase2Needed := false
	for i := range t.Branches {
		b := &t.Branches[i]
		b.BackwardOp = p.OpCommit
		phase2Needed = phase2Needed || b.Bwd.Status == p.OpIdle
	}
	if phase2Needed {
		fx.Report(p.StatusCommitting)
	}
	phase2(t, fx)
}

// phase2 sends commit to every yes voter that has not had it, and settles
// the transaction when all have acknowledged it (read-only voters need no
// commit). A commit that failed past its budget makes it stuck.
func phase2(t *p.Txn, fx *p.Effects) {
	settled := 0
	var failed *p.Branch
	for i := range t.Branches {
		b := &t.Branches[i]
		switch b.Bwd.Status {
		case p.OpIdle:
			p.StartBackward(t, i, fx)
		case p.OpDone, p.OpSkipped:
			settled++
		case p.OpFailed:
			if failed == nil {
				failed = b
			}
		}
	}
	switch {
	case settled == len(t.Branches):
		t.Status = p.StatusSucceeded
		fx.Report(p.StatusSucceeded)
	case failed != nil:
		p.Stick(t, fx, p.StatusCommitting, fmt.Sprintf("commit of branch %s failed after %d attempts: %s", failed.ID, failed.Bwd.Attempts, failed.Bwd.Error))
	default:
		p.ArmNext(t, fx, false)
	}
}

// abort decides abort (presumed abort) and ends the transaction in the
// same step. Abort goes out once to every branch that may have prepared:
// it voted yes, or its prepare is in flight or its outcome unknown, or it
// voted no after an earlier prepare of unknown outcome (Unsure: that
// prepare may still land and hold locks). A branch whose only prepare was
// answered no or read-only, or whose prepare never started, holds nothing
// to release. No answer is awaited: a participant that misses the
// abort asks the coordinator and is told abort.
func abort(t *p.Txn, now int64, reason string, fx *p.Effects) {
	p.Decide(t, p.StatusAborted, now, reason)
	for i := range t.Branches {
		b := &t.Branches[i]
		b.BackwardOp = p.OpAbort
		if b.Bwd.Status != p.OpIdle {
			continue // read-only
		}
		switch {
		case b.Fwd.Status == p.OpIdle, b.Fwd.Status == p.OpRejected && !b.Fwd.Unsure:
			b.Bwd.Status = p.OpSkipped
			continue
		case b.Fwd.Status == p.OpRetrying:
			// Give the prepare up: it may have happened, so abort it.
			b.Fwd.Status, b.Fwd.NextAt = p.OpFailed, 0
		}
		p.StartBackward(t, i, fx)
	}
	fx.Report(p.StatusAborted)
}
