package threepc

import (
	"fmt"

	p "github.com/concordtm/concord/internal/protocol"
)

var (
	voting        = []p.Status{p.StatusRunning}
	precommitting = []p.Status{p.StatusPreCommitting}
	committing    = []p.Status{p.StatusCommitting}
	stuck         = []p.Status{p.StatusStuck}
	aborted       = []p.Status{p.StatusAborted}
	unchanged     = func(_ *p.Txn, _ p.Event, fx *p.Effects) error { fx.Unchanged(); return nil }
)

// Machine is the three-phase commit coordinator's transition table.
var Machine = &p.Machine{Mode: p.ModeThreePC, Table: []p.Transition{
	{From: []p.Status{p.StatusNew}, On: p.EvSubmit, To: []p.Status{p.StatusRunning, p.StatusSucceeded}, Do: submit},

	{From: voting, On: p.EvResult, To: []p.Status{p.StatusRunning, p.StatusPreCommitting, p.StatusAborted}, Do: result},
	{From: voting, On: p.EvTick, To: []p.Status{p.StatusRunning, p.StatusAborted}, Do: tick},
	{From: voting, On: p.EvRecover, To: aborted, Do: recoverVoting},
	{From: voting, On: p.EvRetry, To: voting, Do: retry},
	{From: voting, On: p.EvAbort, To: aborted, Do: operatorAbort},

	{From: precommitting, On: p.EvResult, To: []p.Status{p.StatusPreCommitting, p.StatusCommitting, p.StatusAborted}, Do: result},
	{From: precommitting, On: p.EvTick, To: []p.Status{p.StatusPreCommitting, p.StatusAborted}, Do: tick},
	{From: precommitting, On: p.EvRecover, To: precommitting, Do: recoverPhase},
	{From: precommitting, On: p.EvRetry, To: precommitting, Do: retry},
	{From: precommitting, On: p.EvAbort, To: aborted, Do: operatorAbort},

	{From: committing, On: p.EvResult, To: []p.Status{p.StatusCommitting, p.StatusSucceeded, p.StatusStuck}, Do: result},
	{From: committing, On: p.EvTick, To: committing, Do: tick},
	{From: committing, On: p.EvRecover, To: committing, Do: recoverPhase},
	{From: committing, On: p.EvRetry, To: committing, Do: retry},

	{From: stuck, On: p.EvRetry, To: committing, Do: retry},
	{From: stuck, On: p.EvResult, To: stuck, Do: result},
	{From: stuck, On: p.EvRecover, To: stuck, Do: p.RecoverStuck},
	{From: stuck, On: p.EvTick, To: stuck, Do: unchanged},
}}

// Step applies ev to t. See protocol.Machine.Step.
func Step(t p.Txn, ev p.Event) (p.Txn, []p.Effect, error) { return Machine.Step(t, ev) }

// submit checks the branches and asks every one whether it can commit.
func submit(t *p.Txn, ev p.Event, fx *p.Effects) error {
	s := ev.(p.Submit)
	*t = s.Txn.Clone()
	t.Mode = p.ModeThreePC
	if err := p.CheckVotingBranches(t); err != nil {
		return err
	}
	for i := range t.Branches {
		b := &t.Branches[i]
		b.ForwardOp, b.MidOp, b.BackwardOp = p.OpCanCommit, p.OpPreCommit, "" // the last op is set at the decision
		b.Fwd, b.Mid, b.Bwd = p.OpState{Status: p.OpIdle}, p.OpState{Status: p.OpIdle}, p.OpState{Status: p.OpIdle}
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
	advance(t, s.Now, fx) // no branches: commits at once
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
	if t.Status != p.StatusStuck {
		advance(t, r.Now, fx)
	}
	// A vote, a pre-commit acknowledgement or a commit acknowledgement that
	// is not the last needs no write of its own: a restart while voting
	// aborts whatever the votes were, and a restart in a later phase
	// resends that phase's message to every branch not known to have
	// answered (participants treat repeats as no-ops).
	if t.Status == before && before != p.StatusStuck {
		fx.Defer()
	}
	return nil
}

// apply records a non-stale result. A can-commit may be refused (a no), and
// so may a pre-commit (the work failed, or the participant had already
// given up and aborted on its own). A do-commit may not: refused or
// unknown, it is retried. 3PC has no read-only vote; such an answer counts
// as unknown.
func apply(t *p.Txn, b *p.Branch, op *p.OpState, r p.Result) {
	if r.Outcome == p.OutcomeReadOnly {
		r.Outcome = p.OutcomeUnknown
		r.Error = "answered read-only, which 3pc does not have: " + r.Error
	}
	p.ApplyOutcome(t, b, op, r, op != &b.Bwd)
}

func tick(t *p.Txn, ev p.Event, fx *p.Effects) error {
	now := ev.At()
	undecided := t.Status == p.StatusRunning || t.Status == p.StatusPreCommitting
	if undecided && t.Deadline > 0 && now >= t.Deadline {
		what := "votes"
		if t.Status == p.StatusPreCommitting {
			what = "pre-commit acknowledgements"
		}
		abort(t, now, "deadline exceeded waiting for "+what, fx)
		return nil
	}
	if !p.DueRetries(t, now, fx, phaseOp(t)) {
		// Nothing due: a timer that fired early or was superseded.
		fx.Unchanged()
	}
	p.ArmNext(t, fx, undecided)
	return nil
}

// recoverVoting aborts a transaction that was still asking can-commit when
// the coordinator stopped. No participant can have done any work: the
// pre-commit phase is written before the first pre-commit goes out. Abort
// goes to the branches that may have voted yes, so that they stop waiting.
func recoverVoting(t *p.Txn, ev p.Event, fx *p.Effects) error {
	p.LoseInflight(t, ev.At())
	abort(t, ev.At(), "coordinator restarted before every branch could commit (presumed abort)", fx)
	return nil
}

// recoverPhase resumes the pre-commit or commit phase: the message goes
// again, now, to every branch that has not acknowledged it. A pre-commit
// phase gets a fresh deadline: the participants that pre-committed are
// waiting for the rest of it.
func recoverPhase(t *p.Txn, ev p.Event, fx *p.Effects) error {
	now := ev.At()
	p.LoseInflight(t, now)
	pick := phaseOp(t)
	for i := range t.Branches {
		if op := pick(&t.Branches[i]); op.Status == p.OpRetrying {
			op.NextAt = now
		}
	}
	if t.Status == p.StatusPreCommitting && t.Options.Timeout > 0 {
		t.Deadline = now + t.Options.Timeout
	}
	p.DueRetries(t, now, fx, pick)
	advance(t, now, fx)
	return nil
}

func retry(t *p.Txn, ev p.Event, fx *p.Effects) error {
	p.RetryNow(t, ev.At(), fx, phaseOp)
	advance(t, ev.At(), fx)
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

// phaseOp picks the operation the current phase drives.
func phaseOp(t *p.Txn) func(b *p.Branch) *p.OpState {
	switch t.Status {
	case p.StatusRunning:
		return func(b *p.Branch) *p.OpState { return &b.Fwd }
	case p.StatusPreCommitting:
		return func(b *p.Branch) *p.OpState { return &b.Mid }
	}
	return func(b *p.Branch) *p.OpState { return &b.Bwd }
}

// advance moves the transaction on after anything changed.
func advance(t *p.Txn, now int64, fx *p.Effects) {
	switch t.Status {
	case p.StatusRunning:
		countVotes(t, now, fx)
	case p.StatusPreCommitting:
		countAcks(t, now, fx)
	case p.StatusCommitting:
		phase3(t, fx)
	}
}

// countVotes tallies the can-commit answers: the first no (a refusal, or a
// question that kept failing past its budget) aborts; yes from every branch
// starts the pre-commit phase; otherwise the vote goes on.
func countVotes(t *p.Txn, now int64, fx *p.Effects) {
	yes := 0
	for i := range t.Branches {
		b := &t.Branches[i]
		switch b.Fwd.Status {
		case p.OpDone:
			yes++
		case p.OpRejected:
			abort(t, now, fmt.Sprintf("branch %s cannot commit: %s", b.ID, b.Fwd.Error), fx)
			return
		case p.OpFailed:
			abort(t, now, fmt.Sprintf("can-commit of branch %s failed after %d attempts: %s", b.ID, b.Fwd.Attempts, b.Fwd.Error), fx)
			return
		}
	}
	if yes < len(t.Branches) {
		p.ArmNext(t, fx, true)
		return
	}
	// Every branch can commit: the pre-commit phase. Step writes it before
	// any pre-commit goes out, so that a restart resumes this phase instead
	// of presuming abort (a participant that pre-committed may commit on
	// its own timeout).
	t.Status = p.StatusPreCommitting
	if t.Options.Timeout > 0 {
		t.Deadline = now + t.Options.Timeout
	}
	if len(t.Branches) > 0 {
		fx.Report(p.StatusPreCommitting)
	}
	for i := range t.Branches {
		p.StartMid(t, i, fx)
	}
	countAcks(t, now, fx)
}

// countAcks tallies the pre-commit acknowledgements: a refusal or a
// pre-commit that kept failing aborts; an acknowledgement from every
// branch decides commit.
func countAcks(t *p.Txn, now int64, fx *p.Effects) {
	acked := 0
	for i := range t.Branches {
		b := &t.Branches[i]
		switch b.Mid.Status {
		case p.OpDone:
			acked++
		case p.OpRejected:
			abort(t, now, fmt.Sprintf("branch %s refused pre-commit: %s", b.ID, b.Mid.Error), fx)
			return
		case p.OpFailed:
			abort(t, now, fmt.Sprintf("pre-commit of branch %s failed after %d attempts: %s", b.ID, b.Mid.Attempts, b.Mid.Error), fx)
			return
		}
	}
	if acked < len(t.Branches) {
		p.ArmNext(t, fx, true)
		return
	}
	// The decision. Step writes it before any do-commit goes out.
	p.Decide(t, p.StatusCommitting, now, "")
	t.Deadline = 0
	for i := range t.Branches {
		t.Branches[i].BackwardOp = p.OpDoCommit
	}
	if len(t.Branches) > 0 {
		fx.Report(p.StatusCommitting)
	}
	phase3(t, fx)
}

// phase3 sends do-commit to every branch that has not had it and settles
// the transaction when all have acknowledged it. A do-commit that failed
// past its budget makes it stuck.
func phase3(t *p.Txn, fx *p.Effects) {
	settled := 0
	var failed *p.Branch
	for i := range t.Branches {
		b := &t.Branches[i]
		switch b.Bwd.Status {
		case p.OpIdle:
			p.StartBackward(t, i, fx)
		case p.OpDone:
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
		p.Stick(t, fx, p.StatusCommitting, fmt.Sprintf("do-commit of branch %s failed after %d attempts: %s", failed.ID, failed.Bwd.Attempts, failed.Bwd.Error))
	default:
		p.ArmNext(t, fx, false)
	}
}

// abort decides abort and ends the transaction in the same step. Abort goes
// out once to every branch that may be waiting: it said it can commit, or
// its can-commit is in flight or unknown, or it said no after an earlier
// can-commit of unknown outcome (after the pre-commit phase began that is
// every branch). No answer is awaited. From the pre-commit phase
// this write is forced, unlike 2PC's presumed abort: without it a restart
// would resume the pre-commit phase and could commit what some
// participants were told to abort.
func abort(t *p.Txn, now int64, reason string, fx *p.Effects) {
	p.Decide(t, p.StatusAborted, now, reason)
	t.Deadline = 0
	for i := range t.Branches {
		b := &t.Branches[i]
		b.BackwardOp = p.OpAbort
		for _, op := range []*p.OpState{&b.Fwd, &b.Mid} {
			if op.Status == p.OpRetrying {
				// Give it up: it may have happened, so abort it.
				op.Status, op.NextAt = p.OpFailed, 0
			}
		}
		if b.Fwd.Status == p.OpIdle || b.Fwd.Status == p.OpRejected && !b.Fwd.Unsure {
			b.Bwd.Status = p.OpSkipped
			continue
		}
		p.StartBackward(t, i, fx)
	}
	fx.Report(p.StatusAborted)
}
