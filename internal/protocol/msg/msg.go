// Package msg is the reliable (transactional) message as a pure state
// machine: the producer's local transaction and its message are atomic,
// and delivery is retried until every destination has it.
//
// A message is submitted in one of two ways:
//
//   - Prepared (a "half" message): the producer registers the message and a
//     check-back endpoint, runs its local transaction, and then reports
//     Commit (deliver it) or Rollback (drop it). If neither arrives before
//     the deadline, the coordinator calls the check-back, which answers
//     from the producer's own database whether the local transaction
//     committed (success: deliver), rolled back (rejected: drop), or is
//     still running (unknown: ask again later, with backoff). Past its
//     budget the check-back leaves the message stuck ("needs attention")
//     with an alert; it is never delivered on a guess and never dropped
//     silently. An operator may then retry the check-back or abort.
//   - Direct: the producer has already committed (an outbox relay, or a
//     message with no local transaction); delivery starts at once.
//
// Each destination is a branch whose forward operation is deliver. A
// delivery is retried until the destination acknowledges it; a
// destination that refuses is retried like one that failed (a consumer
// must take the message; its own business "no" is its own follow-up
// message). Past the budget the message is stuck until an operator retries.
// Deliveries wait for NotBefore when it is set (delayed delivery).
//
// The check-back is kept as a branch too (forward operation check), so that
// its attempts show in the history like any call; it is always the first
// branch and is not a destination.
package msg

import (
	"fmt"

	p "github.com/concordtm/concord/internal/protocol"
)

// CheckBranch is the id of the check-back branch.
const CheckBranch = "check-back"

var (
	prepared   = []p.Status{p.StatusPrepared}
	delivering = []p.Status{p.StatusDelivering}
	stuck      = []p.Status{p.StatusStuck}
	decided    = []p.Status{p.StatusDelivering, p.StatusSucceeded, p.StatusStuck}
	anyLive    = []p.Status{p.StatusPrepared, p.StatusDelivering, p.StatusSucceeded, p.StatusAborted, p.StatusStuck}
	unchanged  = func(_ *p.Txn, _ p.Event, fx *p.Effects) error { fx.Unchanged(); return nil }
)

// Machine is the message transition table.
var Machine = &p.Machine{Mode: p.ModeMsg, Table: []p.Transition{
	{From: []p.Status{p.StatusNew}, On: p.EvSubmit, To: []p.Status{p.StatusPrepared, p.StatusDelivering, p.StatusSucceeded}, Do: begin},

	{From: prepared, On: p.EvCommit, To: decided, Do: commit},
	{From: prepared, On: p.EvRollback, To: []p.Status{p.StatusAborted}, Do: rollback},
	{From: prepared, On: p.EvAbort, To: []p.Status{p.StatusAborted}, Do: rollback},
	{From: prepared, On: p.EvTick, To: anyLive, Do: checkTick},
	{From: prepared, On: p.EvRecover, To: anyLive, Do: checkRecover},
	{From: prepared, On: p.EvRetry, To: anyLive, Do: checkNow},
	{From: prepared, On: p.EvResult, To: anyLive, Do: result},

	{From: delivering, On: p.EvResult, To: decided, Do: result},
	{From: delivering, On: p.EvTick, To: decided, Do: tick},
	{From: delivering, On: p.EvRecover, To: decided, Do: recoverStep},
	{From: delivering, On: p.EvRetry, To: decided, Do: retry},
	{From: []p.Status{p.StatusDelivering, p.StatusSucceeded}, On: p.EvCommit, To: []p.Status{p.StatusDelivering, p.StatusSucceeded}, Do: unchanged},
	{From: []p.Status{p.StatusAborted}, On: p.EvRollback, To: []p.Status{p.StatusAborted}, Do: unchanged},

	{From: stuck, On: p.EvRetry, To: anyLive, Do: retry},
	{From: stuck, On: p.EvAbort, To: []p.Status{p.StatusAborted}, Do: abortStuck},
	{From: stuck, On: p.EvCommit, To: decided, Do: commitStuck},
	{From: stuck, On: p.EvRollback, To: []p.Status{p.StatusAborted}, Do: abortStuck},
	{From: stuck, On: p.EvResult, To: stuck, Do: result},
	{From: stuck, On: p.EvRecover, To: stuck, Do: p.RecoverStuck},
	{From: stuck, On: p.EvTick, To: stuck, Do: unchanged},
}}

// Step applies ev to t. See protocol.Machine.Step.
func Step(t p.Txn, ev p.Event) (p.Txn, []p.Effect, error) { return Machine.Step(t, ev) }

// Prepared reports whether a submitted message waits for its producer: its
// first branch is the check-back.
func hasCheck(t *p.Txn) bool { return len(t.Branches) > 0 && t.Branches[0].ForwardOp == p.OpCheck }

func begin(t *p.Txn, ev p.Event, fx *p.Effects) error {
	s := ev.(p.Submit)
	*t = s.Txn.Clone()
	t.Mode = p.ModeMsg
	seen := map[string]bool{}
	dests := 0
	for i := range t.Branches {
		b := &t.Branches[i]
		if b.ID == "" || seen[b.ID] {
			return fmt.Errorf("%w: empty or repeated branch id %q", p.ErrInvalidEvent, b.ID)
		}
		seen[b.ID] = true
		if b.ForwardOp == p.OpCheck {
			if i != 0 || b.ID != CheckBranch {
				return fmt.Errorf("%w: the check-back must be the first branch, named %q", p.ErrInvalidEvent, CheckBranch)
			}
		} else {
			if b.ID == CheckBranch {
				return fmt.Errorf("%w: branch id %q is reserved for the check-back", p.ErrInvalidEvent, CheckBranch)
			}
			b.ForwardOp = p.OpDeliver
			dests++
		}
		b.BackwardOp, b.BackwardURL = "", ""
		b.Fwd, b.Bwd = p.OpState{Status: p.OpIdle}, p.OpState{Status: p.OpSkipped}
		b.History = nil
	}
	if dests == 0 {
		return fmt.Errorf("%w: a message needs at least one destination", p.ErrInvalidEvent)
	}
	t.CreatedAt, t.UpdatedAt = s.Now, s.Now
	if hasCheck(t) {
		if t.Options.Timeout <= 0 {
			return fmt.Errorf("%w: a prepared message needs a timeout: when to check back", p.ErrInvalidEvent)
		}
		t.Deadline = s.Now + t.Options.Timeout
		t.Status = p.StatusPrepared
		fx.Report(p.StatusPrepared)
		armPrepared(t, fx)
		return nil
	}
	p.Decide(t, p.StatusDelivering, s.Now, "")
	fx.Report(p.StatusDelivering)
	advance(t, s.Now, fx)
	return nil
}

// commit is the producer's "my local transaction committed".
func commit(t *p.Txn, ev p.Event, fx *p.Effects) error {
	decide(t, ev.At(), fx)
	return nil
}

func decide(t *p.Txn, now int64, fx *p.Effects) {
	if hasCheck(t) {
		c := &t.Branches[0].Fwd
		if c.Status != p.OpDone {
			// A check-back still out answers a question already settled.
			c.Status, c.NextAt = p.OpSkipped, 0
		}
	}
	p.Decide(t, p.StatusDelivering, now, "")
	fx.Report(p.StatusDelivering)
	advance(t, now, fx)
}

func rollback(t *p.Txn, ev p.Event, fx *p.Effects) error {
	reason := "the producer rolled back"
	switch e := ev.(type) {
	case p.Rollback:
		if e.Reason != "" {
			reason += ": " + e.Reason
		}
	case p.Abort:
		reason = "aborted by operator"
		if e.Reason != "" {
			reason += ": " + e.Reason
		}
	}
	drop(t, ev.At(), reason, fx)
	return nil
}

func drop(t *p.Txn, now int64, reason string, fx *p.Effects) {
	for i := range t.Branches {
		if f := &t.Branches[i].Fwd; f.Status != p.OpDone {
			f.Status, f.NextAt = p.OpSkipped, 0
		}
	}
	p.Decide(t, p.StatusAborted, now, reason)
	fx.Report(p.StatusAborted)
}

func abortStuck(t *p.Txn, ev p.Event, fx *p.Effects) error {
	if t.StuckPhase != p.StatusPrepared {
		return fmt.Errorf("%w: %s was committed by its producer and is being delivered; it cannot be aborted", p.ErrInvalidTransition, t.GID)
	}
	t.StuckPhase, t.StuckReason = "", ""
	return rollback(t, ev, fx)
}

func commitStuck(t *p.Txn, ev p.Event, fx *p.Effects) error {
	if t.StuckPhase != p.StatusPrepared {
		fx.Unchanged() // already committed; a repeated submit
		return nil
	}
	t.StuckPhase, t.StuckReason = "", ""
	decide(t, ev.At(), fx)
	return nil
}

// armPrepared arms the next moment a prepared message needs attention: the
// deadline (first check-back) or the check-back's retry.
func armPrepared(t *p.Txn, fx *p.Effects) {
	c := t.Branches[0].Fwd
	switch {
	case c.Status == p.OpRetrying:
		fx.Arm(c.NextAt)
	case c.Status == p.OpIdle && t.Deadline > 0:
		fx.Arm(t.Deadline)
	}
}

func checkTick(t *p.Txn, ev p.Event, fx *p.Effects) error {
	now := ev.At()
	c := &t.Branches[0].Fwd
	due := (c.Status == p.OpIdle && t.Deadline > 0 && now >= t.Deadline) ||
		(c.Status == p.OpRetrying && c.NextAt <= now)
	if !due {
		fx.Unchanged()
		armPrepared(t, fx)
		return nil
	}
	p.StartForward(t, 0, fx)
	return nil
}

func checkRecover(t *p.Txn, ev p.Event, fx *p.Effects) error {
	if !p.LoseInflight(t, ev.At()) {
		fx.Unchanged()
	}
	armPrepared(t, fx)
	return nil
}

// checkNow is an operator's retry of a prepared message: check back now.
func checkNow(t *p.Txn, ev p.Event, fx *p.Effects) error {
	c := &t.Branches[0].Fwd
	if c.Status == p.OpInflight {
		fx.Unchanged()
		return nil
	}
	c.Tries = 0
	t.TotalAttempts = 0
	p.StartForward(t, 0, fx)
	return nil
}

func result(t *p.Txn, ev p.Event, fx *p.Effects) error {
	r := ev.(p.Result)
	b, op, stale, err := p.ResultTarget(t, r)
	if err != nil {
		return err
	}
	if r.Op == p.OpCheck {
		if stale || t.Status != p.StatusPrepared {
			// Answers a question already settled (or a lost call); kept in
			// the history only.
			if t.Status == p.StatusPrepared {
				armPrepared(t, fx)
			}
			return nil
		}
		p.ApplyOutcome(t, b, op, r, true)
		switch op.Status {
		case p.OpDone:
			decide(t, r.Now, fx)
		case p.OpRejected:
			drop(t, r.Now, "check-back: the producer's local transaction rolled back", fx)
		case p.OpFailed:
			p.Stick(t, fx, p.StatusPrepared, fmt.Sprintf("check-back failed after %d attempts, the local transaction's outcome is unknown: %s", op.Attempts, op.Error))
		default:
			armPrepared(t, fx)
		}
		return nil
	}
	if t.Status == p.StatusPrepared {
		return nil // no delivery has been started: a stray answer
	}
	before, calls := t.Status, t.TotalAttempts
	if !stale {
		p.ApplyOutcome(t, b, op, r, false)
	}
	if t.Status != p.StatusStuck {
		advance(t, r.Now, fx)
	}
	// A delivery acknowledgement that is not the last needs no write of
	// its own: after a restart every delivery not known to be done is
	// made again, and the consumer's dedup absorbs the repeat.
	if t.Status == before && before == p.StatusDelivering && t.TotalAttempts == calls {
		fx.Defer()
	}
	return nil
}

func tick(t *p.Txn, ev p.Event, fx *p.Effects) error {
	now := ev.At()
	if t.NotBefore > 0 && now >= t.NotBefore && anyIdle(t) {
		advance(t, now, fx)
		return nil
	}
	if !p.DueRetries(t, now, fx, destinations) {
		fx.Unchanged()
	}
	arm(t, fx)
	return nil
}

func recoverStep(t *p.Txn, ev p.Event, fx *p.Effects) error {
	p.LoseInflight(t, ev.At())
	p.DueRetries(t, ev.At(), fx, destinations)
	advance(t, ev.At(), fx)
	return nil
}

func retry(t *p.Txn, ev p.Event, fx *p.Effects) error {
	if t.Status == p.StatusStuck && t.StuckPhase == p.StatusPrepared {
		t.Status = p.StatusPrepared
		t.StuckPhase, t.StuckReason = "", ""
		return checkNow(t, ev, fx)
	}
	p.RetryNow(t, ev.At(), fx, func(*p.Txn) func(b *p.Branch) *p.OpState { return destinations })
	advance(t, ev.At(), fx)
	return nil
}

// destinations picks the delivery of every destination branch (nil for
// the check-back).
func destinations(b *p.Branch) *p.OpState {
	if b.ForwardOp != p.OpDeliver {
		return nil
	}
	return &b.Fwd
}

func anyIdle(t *p.Txn) bool {
	for i := range t.Branches {
		if op := destinations(&t.Branches[i]); op != nil && op.Status == p.OpIdle {
			return true
		}
	}
	return false
}

// arm arms the earliest pending retry, or NotBefore while deliveries wait
// for it.
func arm(t *p.Txn, fx *p.Effects) {
	var at int64
	if t.NotBefore > 0 && anyIdle(t) {
		at = t.NotBefore
	}
	for i := range t.Branches {
		if op := destinations(&t.Branches[i]); op != nil && op.Status == p.OpRetrying && (at == 0 || op.NextAt < at) {
			at = op.NextAt
		}
	}
	if at > 0 {
		fx.Arm(at)
	}
}

// advance starts every idle delivery (once NotBefore has passed) and
// settles the message when every destination has it.
func advance(t *p.Txn, now int64, fx *p.Effects) {
	wait := t.NotBefore > 0 && now < t.NotBefore
	done, total := 0, 0
	var failed *p.Branch
	for i := range t.Branches {
		b := &t.Branches[i]
		op := destinations(b)
		if op == nil {
			continue
		}
		total++
		switch op.Status {
		case p.OpIdle:
			if !wait {
				p.StartForward(t, i, fx)
			}
		case p.OpDone:
			done++
		case p.OpFailed:
			failed = b
		}
	}
	if done == total {
		t.Status = p.StatusSucceeded
		fx.Report(p.StatusSucceeded)
		return
	}
	if failed != nil {
		p.Stick(t, fx, p.StatusDelivering, fmt.Sprintf("delivery to %s failed after %d attempts: %s", failed.ID, failed.Fwd.Attempts, failed.Fwd.Error))
		return
	}
	arm(t, fx)
}
