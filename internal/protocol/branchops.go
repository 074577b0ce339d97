package protocol

import "fmt"

// This file holds the branch bookkeeping every mode shares: starting calls,
// recording results, scheduling retries, and arming the next timer.

// StartForward marks branch i's forward operation in flight and emits the call.
func StartForward(t *Txn, i int, fx *Effects) {
	b := &t.Branches[i]
	start(t, b, &b.Fwd, b.ForwardOp, b.ForwardURL, fx)
}

// StartBackward marks branch i's backward operation in flight and emits the call.
func StartBackward(t *Txn, i int, fx *Effects) {
	b := &t.Branches[i]
	start(t, b, &b.Bwd, b.BackwardOp, b.BackwardURL, fx)
}

// StartMid marks branch i's middle operation (the 3PC pre-commit) in flight
// and emits the call, to the forward URL.
func StartMid(t *Txn, i int, fx *Effects) {
	b := &t.Branches[i]
	start(t, b, &b.Mid, b.MidOp, b.ForwardURL, fx)
}

func start(t *Txn, b *Branch, op *OpState, name Op, url string, fx *Effects) {
	op.Status = OpInflight
	op.Attempts++
	op.Tries++
	op.NextAt = 0
	t.TotalAttempts++
	fx.Call(Call{Branch: b.ID, Op: name, URL: url, Payload: b.Payload, Attempt: op.Attempts, Timeout: t.Options.BranchTimeout})
}

// ResultTarget finds the branch and operation a Result refers to. stale is
// true when the result does not answer the call currently in flight (an
// older attempt, or an operation no longer in flight); its attempt is
// recorded in the history but changes nothing else.
func ResultTarget(t *Txn, r Result) (b *Branch, op *OpState, stale bool, err error) {
	i := t.Branch(r.Branch)
	if i < 0 {
		return nil, nil, false, fmt.Errorf("%w: no branch %q in %s", ErrInvalidEvent, r.Branch, t.GID)
	}
	b = &t.Branches[i]
	switch r.Op {
	case b.ForwardOp:
		op = &b.Fwd
	case b.BackwardOp:
		op = &b.Bwd
	case b.MidOp:
		if r.Op == "" {
			return nil, nil, false, fmt.Errorf("%w: result without an operation", ErrInvalidEvent)
		}
		op = &b.Mid
	default:
		return nil, nil, false, fmt.Errorf("%w: branch %q has no operation %q", ErrInvalidEvent, r.Branch, r.Op)
	}
	b.History = append(b.History, Attempt{
		Op: r.Op, Number: r.Attempt, Started: r.Started, Duration: r.Now - r.Started,
		Outcome: r.Outcome, Error: r.Error,
	})
	if over := len(b.History) - MaxHistory; over > 0 {
		b.History = append(b.History[:0], b.History[over:]...)
	}
	stale = op.Status != OpInflight || op.Attempts != r.Attempt
	return b, op, stale, nil
}

// ApplyOutcome updates op after a non-stale result. A success ends the
// operation; a rejection ends it when rejectable (forward ops of a saga),
// and otherwise counts as unknown; an unknown outcome schedules a retry
// while the budget lasts and marks the operation failed after that.
func ApplyOutcome(t *Txn, b *Branch, op *OpState, r Result, rejectable bool) {
	op.Error = r.Error
	switch {
	case r.Outcome == OutcomeSuccess:
		op.Status = OpDone
		op.Error = ""
	case r.Outcome == OutcomeRejected && rejectable:
		op.Status = OpRejected
	default:
		if r.Outcome == OutcomeRejected {
			op.Error = "refused an operation that must not refuse: " + r.Error
		} else {
			op.Unsure = true
		}
		if op.Tries >= t.Options.MaxAttempts || t.TotalAttempts >= t.Options.MaxTotalAttempts {
			op.Status = OpFailed
			return
		}
		op.Status = OpRetrying
		op.NextAt = r.Now + Backoff(t.Options.RetryInitial, t.Options.RetryMax, op.Tries, t.GID+"/"+b.ID+"/"+string(r.Op))
	}
}

// LoseInflight turns every in-flight operation into a retry due now: after
// a restart the call's outcome is unknown. It reports whether there was any.
func LoseInflight(t *Txn, now int64) bool {
	lost := false
	for i := range t.Branches {
		for _, op := range t.Branches[i].ops() {
			if op.Status == OpInflight {
				op.Status = OpRetrying
				op.NextAt = now
				op.Error = "coordinator restarted while the call was in flight"
				op.Unsure = true
				lost = true
			}
		}
	}
	return lost
}

// RecoverStuck is the Do of a restart of a stuck transaction. Nothing is
// called until an operator retries, but the calls that were in flight are
// lost: they become retries, which the operator's retry re-issues. (Left
// in flight, they would wait forever for answers that cannot come.)
func RecoverStuck(t *Txn, ev Event, fx *Effects) error {
	if !LoseInflight(t, ev.At()) {
		fx.Unchanged()
	}
	return nil
}

// ResetBudget gives every retrying or failed operation a fresh budget and
// makes retries due now. Failed operations become retrying again.
func ResetBudget(t *Txn, now int64, phase func(b *Branch) *OpState) {
	t.TotalAttempts = 0
	for i := range t.Branches {
		b := &t.Branches[i]
		b.Fwd.Tries, b.Mid.Tries, b.Bwd.Tries = 0, 0, 0
		op := phase(b)
		if op == nil {
			continue
		}
		if op.Status == OpRetrying || op.Status == OpFailed {
			op.Status = OpRetrying
			op.NextAt = now
		}
	}
}

// DueRetries starts every operation in pick whose retry is due.
func DueRetries(t *Txn, now int64, fx *Effects, pick func(b *Branch) *OpState) bool {
	started := false
	for i := range t.Branches {
		b := &t.Branches[i]
		op := pick(b)
		if op == nil || op.Status != OpRetrying || op.NextAt > now {
			continue
		}
		switch op {
		case &b.Fwd:
			StartForward(t, i, fx)
		case &b.Mid:
			StartMid(t, i, fx)
		default:
			StartBackward(t, i, fx)
		}
		started = true
	}
	return started
}

// ArmNext arms a timer for the earliest pending retry, or the deadline when
// withDeadline is set.
func ArmNext(t *Txn, fx *Effects, withDeadline bool) {
	var at int64
	if withDeadline && t.Deadline > 0 {
		at = t.Deadline
	}
	for i := range t.Branches {
		for _, op := range t.Branches[i].ops() {
			if op.Status == OpRetrying && (at == 0 || op.NextAt < at) {
				at = op.NextAt
			}
		}
	}
	if at > 0 {
		fx.Arm(at)
	}
}

// Decide records the commit or abort decision. The Persist that Step puts
// first in the effects makes it durable before any call it leads to.
func Decide(t *Txn, to Status, now int64, reason string) {
	t.Status = to
	t.DecidedAt = now
	if reason != "" {
		t.Reason = reason
	}
}

// Stick moves the transaction to stuck and raises an alert.
func Stick(t *Txn, fx *Effects, phase Status, why string) {
	t.StuckPhase = phase
	t.Status = StatusStuck
	t.StuckReason = why
	fx.Alert("stuck", fmt.Sprintf("%s %s is stuck while %s: %s", t.Mode, t.GID, phase, why))
	fx.Report(StatusStuck)
}

// RetryNow carries out an operator's retry: a stuck transaction resumes the
// phase it was stuck in, every retrying or failed operation of that phase
// (as phase picks it) gets a fresh budget, and those are called now. The
// mode then advances as after any other event.
func RetryNow(t *Txn, now int64, fx *Effects, phase func(t *Txn) func(b *Branch) *OpState) {
	if t.Status == StatusStuck {
		t.Status = t.StuckPhase
		t.StuckPhase, t.StuckReason = "", ""
	}
	pick := phase(t)
	ResetBudget(t, now, pick)
	DueRetries(t, now, fx, pick)
}

// ops lists the branch's operations: forward, the middle one when the mode
// has it, backward.
func (b *Branch) ops() []*OpState {
	if b.MidOp == "" {
		return []*OpState{&b.Fwd, &b.Bwd}
	}
	return []*OpState{&b.Fwd, &b.Mid, &b.Bwd}
}

// CheckVotingBranches validates the branches of an atomic commitment (2PC,
// 3PC): ids present and unique, no ordering between branches (they vote
// together), and one participant URL for every operation, which it copies
// into BackwardURL. It clears any history the submission carried.
func CheckVotingBranches(t *Txn) error {
	seen := make(map[string]bool, len(t.Branches))
	for i := range t.Branches {
		b := &t.Branches[i]
		switch {
		case b.ID == "" || seen[b.ID]:
			return fmt.Errorf("%w: empty or repeated branch id %q", ErrInvalidEvent, b.ID)
		case len(b.After) > 0:
			return fmt.Errorf("%w: branch %q waits for others, but %s branches vote together", ErrInvalidEvent, b.ID, t.Mode)
		case b.BackwardURL != "" && b.BackwardURL != b.ForwardURL:
			return fmt.Errorf("%w: branch %q has two URLs; a %s participant has one for every operation", ErrInvalidEvent, b.ID, t.Mode)
		}
		seen[b.ID] = true
		b.BackwardURL = b.ForwardURL
		b.History = nil
	}
	return nil
}
