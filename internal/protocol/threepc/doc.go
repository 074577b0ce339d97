// Package threepc is the three-phase commit protocol as pure state
// machines: the coordinator's transition table (Machine) and the
// participant (Participant), which the simulator runs and the participant
// SDK can wrap.
//
// # The protocol
//
// Every branch names one participant URL; the operation travels in the
// Concord-Op header ("can-commit", "pre-commit", "do-commit", "abort").
//
// Phase 1, CanCommit: on Submit the coordinator asks every branch at once
// whether it can commit. The participant does no work; it answers yes
// (success) or no (rejected) and starts waiting for the pre-commit. A
// can-commit whose outcome is unknown is asked again while the retry budget
// lasts; after that it counts as a no.
//
// Phase 2, PreCommit: if every branch said yes, the coordinator enters
// status precommitting and sends pre-commit to every branch. The
// participant now does the work, logs undo and redo durably without making
// the change visible, and acknowledges (success). It may refuse (rejected)
// if the work fails or if it already aborted on its own timeout. A no, a
// refused pre-commit, a pre-commit that fails past its budget, the
// deadline (Options.Timeout, counted afresh for each of the two undecided
// phases) or an operator abort decide abort.
//
// Phase 3, DoCommit: when every branch has acknowledged the pre-commit the
// coordinator decides commit (status committing) and sends do-commit until
// each acknowledges it; then the transaction has succeeded. A do-commit
// must not fail: refused or unknown, it is retried with backoff, and past
// the budget the transaction is stuck (with an alert) until an operator
// retries it. An operator cannot abort once commit is decided.
//
// In the Branch, Fwd is the can-commit (ForwardOp OpCanCommit), Mid the
// pre-commit (MidOp OpPreCommit) and Bwd the last message, whose
// BackwardOp is set at the decision: OpDoCommit or OpAbort. ForwardURL and
// BackwardURL are the same participant URL. There is no read-only vote.
//
// # Abort
//
// On abort the coordinator sends abort once, best effort, to every branch
// that may be waiting (it said yes, or its can-commit is in flight or
// unknown; after the pre-commit phase began, every branch), and the
// transaction is aborted (final) in the same step; answers are not awaited.
// A participant that pre-committed and then hears abort must abort (undo
// its work). A participant that misses the abort is where 3PC differs from
// 2PC: it does not ask the coordinator, it times out (see the participant).
//
// # Timeouts, and the divergence they allow
//
// Both sides have timeouts. The coordinator aborts when votes or pre-commit
// acknowledgements do not arrive in time. A participant that said yes and
// hears no pre-commit in time aborts; one that pre-committed and hears no
// do-commit in time commits: every branch said yes, so commit is the likely
// outcome, and nobody stays blocked. That default is the divergence of the
// seeds' example: the coordinator pre-commits B, dies before telling C; B
// times out into commit, C into abort. The same happens without any crash
// when the coordinator times out into abort while a pre-committed
// participant does not hear the abort (a lost message, a partition) and
// commits on its timeout. Participant timeouts must be longer than the
// coordinator's deadline plus a round trip for this to be rare; no timeout
// makes it impossible. The optional termination protocol (Skeen's, see
// Participant) removes the divergence after a coordinator crash when the
// network does not partition, and keeps it when the network does.
//
// # Forced writes
//
// Four writes per committed transaction are forced, one more than 2PC:
// accepted; precommitting, before any pre-commit goes out (a restart then
// resumes the pre-commit phase with a fresh deadline instead of presuming
// abort: a participant that pre-committed may already have committed on
// its timeout); the commit decision, before any do-commit goes out;
// finished. An abort decided in the running phase is written but needs not
// be (a restart aborts anyway, as in 2PC); an abort decided in the
// pre-commit phase must be, or a restart would resume the phase and might
// commit what some participants were told to abort. Votes and
// acknowledgements that decide nothing are Deferred.
//
// # Restarts
//
// Recover of a transaction still voting aborts it (nobody has done any
// work). Recover in precommitting resends pre-commit to every branch that
// has not acknowledged it; in committing, do-commit likewise. A stuck
// transaction stays stuck until an operator retries it.
//
// # What blocks
//
// A coordinator crash alone never leaves a participant blocked: every
// participant state that waits for the coordinator has a timeout that
// decides. The price is the divergence above.
package threepc
