package protocol

import "slices"

// Mode is the kind of global transaction.
type Mode string

// Modes.
const (
	ModeSaga    Mode = "saga"
	ModeTCC     Mode = "tcc"
	ModeTwoPC   Mode = "2pc"
	ModeThreePC Mode = "3pc"
	ModeMsg     Mode = "msg"
)

// Status is a transaction's place in its life cycle.
type Status string

// Statuses. Not every mode uses every status: a saga goes running →
// succeeded or running → compensating → aborted; a TCC goes running (trying)
// → confirming → succeeded or running → cancelling → aborted; a two-phase
// commit goes running (preparing) → committing → succeeded or running →
// aborted; a three-phase commit goes running (can-commit) → precommitting →
// committing → succeeded, or running or precommitting → aborted; a
// message goes prepared → delivering → succeeded, or prepared → aborted. A phase
// whose calls keep failing turns stuck until an operator retries it.
const (
	StatusNew          Status = "" // before the first event
	StatusRunning      Status = "running"
	StatusConfirming   Status = "confirming"
	StatusCompensating Status = "compensating"
	StatusCancelling   Status = "cancelling"
	StatusCommitting   Status = "committing" // 2pc, 3pc: decided commit, phase 2 under way
	StatusPrepared     Status = "prepared"   // msg: a half message, waiting for the producer's local transaction
	StatusDelivering   Status = "delivering" // msg: the producer committed; deliveries under way
	StatusSucceeded    Status = "succeeded"
	StatusAborted      Status = "aborted"
	StatusStuck        Status = "stuck"
	// 3pc: every branch said it can commit; pre-commit (the work) is under
	// way. Undecided, but committable: a restart resumes it.
	StatusPreCommitting Status = "precommitting"
)

// Final reports whether no further work will happen.
func (s Status) Final() bool { return s == StatusSucceeded || s == StatusAborted }

// Op is an operation the coordinator performs on a branch. The values match
// the wire names in package participant.
type Op string

// Operations.
const (
	OpAction     Op = "action"
	OpCompensate Op = "compensate"
	OpConfirm    Op = "confirm"
	OpCancel     Op = "cancel"
	OpPrepare    Op = "prepare"    // 2pc phase 1: vote
	OpCommit     Op = "commit"     // 2pc phase 2 after a commit decision
	OpAbort      Op = "abort"      // 2pc phase 2 after an abort decision; 3pc abort
	OpCanCommit  Op = "can-commit" // 3pc phase 1: can you commit? (no work done)
	OpPreCommit  Op = "pre-commit" // 3pc phase 2: do the work, log undo/redo, ack
	OpDoCommit   Op = "do-commit"  // 3pc phase 3 after the commit decision
	OpDeliver    Op = "deliver"    // msg: hand the message to one destination
	OpCheck      Op = "check"      // msg: ask the producer whether its local transaction committed
)

// OpStatus is the state of one operation (forward or backward) of a branch.
type OpStatus string

// Operation statuses.
const (
	OpIdle     OpStatus = "idle"     // not called yet
	OpInflight OpStatus = "inflight" // a call is out
	OpRetrying OpStatus = "retrying" // last call's outcome unknown; next call at NextAt
	OpDone     OpStatus = "done"     // succeeded
	OpRejected OpStatus = "rejected" // business "no" (forward ops only)
	OpFailed   OpStatus = "failed"   // gave up after the retry budget; may have happened
	OpSkipped  OpStatus = "skipped"  // not needed (e.g. compensating an action that never ran)
)

// Outcome is the three-way result of one call to a participant.
type Outcome string

// Outcomes.
const (
	OutcomeSuccess  Outcome = "success"
	OutcomeRejected Outcome = "rejected"  // business no: abort or compensate
	OutcomeUnknown  Outcome = "unknown"   // may or may not have happened: retry
	OutcomeReadOnly Outcome = "read-only" // 2pc prepare: yes, and nothing to commit or abort
)

// OpState tracks one operation of one branch.
type OpState struct {
	Status   OpStatus `json:"status"`
	Attempts int      `json:"attempts,omitempty"` // calls made, ever
	Tries    int      `json:"tries,omitempty"`    // calls since the last operator retry
	NextAt   int64    `json:"next_at,omitempty"`  // when Status is OpRetrying
	Error    string   `json:"error,omitempty"`    // last error
	// Unsure: some call of this operation had an unknown outcome (a
	// timeout, a dropped connection, a 5xx, or a call lost in a restart).
	// That call may still land, so a later definite refusal does not prove
	// the operation never took effect: a rejected saga action that is
	// unsure is compensated, and a 2PC/3PC branch whose vote was unsure is
	// sent the abort.
	Unsure bool `json:"unsure,omitempty"`
}

// Attempt is one call in a branch's history.
type Attempt struct {
	Op       Op      `json:"op"`
	Number   int     `json:"n"`
	Started  int64   `json:"started"`
	Duration int64   `json:"dur"`
	Outcome  Outcome `json:"outcome"`
	Error    string  `json:"error,omitempty"`
}

// MaxHistory bounds the attempts kept per branch; older ones are dropped.
const MaxHistory = 64

// Branch is one participant's part of a transaction. Forward is the saga
// action, the TCC confirm, the 2PC prepare or the 3PC can-commit; Backward
// is the compensation, the cancel, the 2PC phase 2 (commit or abort, set at
// the decision) or the 3PC do-commit or abort. Mid is an operation between
// the two that only 3PC uses (the pre-commit); it goes to ForwardURL and is
// absent from the JSON of every other mode.
type Branch struct {
	ID          string    `json:"id"`
	ForwardOp   Op        `json:"fwd_op"`
	BackwardOp  Op        `json:"bwd_op"`
	ForwardURL  string    `json:"fwd_url"`
	BackwardURL string    `json:"bwd_url"`
	Payload     []byte    `json:"payload,omitempty"`
	After       []string  `json:"after,omitempty"`
	MidOp       Op        `json:"mid_op,omitempty"`
	Fwd         OpState   `json:"fwd"`
	Mid         OpState   `json:"mid,omitzero"`
	Bwd         OpState   `json:"bwd"`
	History     []Attempt `json:"history,omitempty"`
}

// Options are the per-transaction limits, all durations in nanoseconds.
type Options struct {
	Timeout          int64 `json:"timeout"`
	BranchTimeout    int64 `json:"branch_timeout"`
	MaxAttempts      int   `json:"max_attempts"`
	MaxTotalAttempts int   `json:"max_total_attempts"`
	RetryInitial     int64 `json:"retry_initial"`
	RetryMax         int64 `json:"retry_max"`
}

// Txn is the full state of one global transaction. It is what the store
// persists (encoded) and what the protocol machines step.
type Txn struct {
	GID         string   `json:"gid"`
	Mode        Mode     `json:"mode"`
	Status      Status   `json:"status"`
	StuckPhase  Status   `json:"stuck_phase,omitempty"`
	Reason      string   `json:"reason,omitempty"`       // why it aborted
	StuckReason string   `json:"stuck_reason,omitempty"` // why it is stuck (while stuck)
	Concurrent  bool     `json:"concurrent,omitempty"`
	Options     Options  `json:"options"`
	Branches    []Branch `json:"branches"`
	CreatedAt   int64    `json:"created_at"`
	UpdatedAt   int64    `json:"updated_at"`
	Deadline    int64    `json:"deadline,omitempty"`
	DecidedAt   int64    `json:"decided_at,omitempty"`
	// NotBefore delays a message's deliveries until this time (unix ns).
	NotBefore     int64 `json:"not_before,omitempty"`
	TotalAttempts int   `json:"total_attempts,omitempty"`
	// MaybeAhead: the transaction was recovered from a written state that
	// deferred steps may have run ahead of, so a branch whose action is
	// idle here may have been called before the restart. A saga that then
	// compensates compensates such branches too (null compensations, which
	// the participant's barrier records and absorbs).
	MaybeAhead bool `json:"maybe_ahead,omitempty"`
	// Fingerprint of the submitted content, so that a resubmission of the
	// same gid can be told apart from a different transaction.
	SpecHash string `json:"spec_hash,omitempty"`
}

// Clone returns a deep copy that shares no mutable memory with t.
// Payloads are treated as immutable and shared.
func (t Txn) Clone() Txn {
	c := t
	c.Branches = make([]Branch, len(t.Branches))
	for i, b := range t.Branches {
		b.After = slices.Clone(b.After)
		b.History = slices.Clone(b.History)
		c.Branches[i] = b
	}
	return c
}

// Branch returns the index of the branch with the given id, or -1.
func (t *Txn) Branch(id string) int {
	for i := range t.Branches {
		if t.Branches[i].ID == id {
			return i
		}
	}
	return -1
}
