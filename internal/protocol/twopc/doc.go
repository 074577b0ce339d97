// Package twopc is the two-phase commit protocol as a pure state machine.
//
// # The protocol
//
// Every branch names one participant URL; the operation travels in the
// Concord-Op header. Phase 1 (voting): on Submit the coordinator sends
// prepare to every branch at once (the lecture's CanCommit). A participant
// that can commit makes its changes durable without making them visible,
// keeps its locks, and votes yes (success). One that cannot votes no
// (rejected). One that changed nothing votes read-only: a yes that needs no
// phase 2, since there is nothing to commit or undo. A prepare whose outcome
// is unknown is sent again (prepare is idempotent on the participant) while
// the retry budget lasts; after that it counts as a no.
//
// Phase 2: if every branch voted yes or read-only the coordinator decides
// commit (status committing) and sends commit to every yes voter (DoCommit)
// until each acknowledges it (HaveCommitted); then the transaction has
// succeeded. A commit must not fail: a rejected or unknown answer is retried
// with backoff, and past the budget the transaction is stuck (with an
// alert) until an operator retries it. If any branch votes no, the deadline
// passes first, or an operator aborts, the coordinator decides abort
// (DoAbort) and the transaction is aborted at once.
//
// In the Branch, Fwd is the prepare (ForwardOp is OpPrepare) and Bwd is
// phase 2, whose BackwardOp is set at the decision: OpCommit or OpAbort.
// ForwardURL and BackwardURL are the same participant URL. A read-only vote
// shows as Fwd done with Bwd skipped.
//
// # The forced write
//
// The commit decision is durable before any participant hears it: the step
// that decides commit starts its effects with Persist (protocol.Machine.Step
// puts it first), and its commit calls come after. After a restart a
// committing transaction therefore resends commit to every branch that has
// not acknowledged it, and nothing ever tells a prepared participant to
// abort a transaction the coordinator has decided to commit.
//
// # Presumed abort
//
// The abort decision needs neither a forced write nor acknowledgements. On
// abort the coordinator sends abort once, best effort, to every branch that
// may have prepared (it voted yes, or its prepare is in flight or its
// outcome unknown; not to branches that voted no or read-only) and the
// transaction is aborted (final) in the same step; answers to those calls
// are not awaited and are refused afterwards. A participant that missed the
// abort learns it by asking the coordinator, which answers "abort" for
// every gid it does not know as committed: a transaction that is unknown,
// aborted, or never decided commit is presumed aborted. Step still emits
// Persist for the aborted state (it always does when the state changed),
// but that write is not needed for correctness: a transaction found running
// after a restart is aborted anyway.
//
// An abort can overtake a prepare still in flight. The participant must
// treat an abort that arrives before its prepare as a no-op that also
// refuses the later prepare, as the branch barrier does for a null
// compensation; otherwise the late prepare would lock resources that no
// decision will ever release.
//
// # Writes
//
// Three writes per transaction are forced: accepted, decided (the commit
// decision, before any commit is sent), finished. A vote that decides
// nothing and a commit acknowledgement that is not the last are Deferred:
// kept in memory and carried by the next write, because losing them in a
// crash is harmless (see Restarts).
//
// # Restarts
//
// Recover of a transaction still running (undecided) aborts it: the
// coordinator never decided, so nobody can have committed, and aborting
// releases the locks of the participants that prepared. Recover of a
// committing transaction resends commit to every branch that has not
// acknowledged it. A stuck transaction stays stuck until an operator
// retries it; an operator cannot abort a transaction that decided commit.
//
// # What blocks
//
// Two-phase commit is a blocking protocol. A participant that voted yes
// holds its locks (and its prepared changes stay invisible) until it hears
// the decision or asks the coordinator for it. While the coordinator is
// down, a prepared participant that has not heard the decision can do
// nothing but wait and ask again: it must not decide on its own, since the
// coordinator may already have decided commit and told the others. The
// deadline bounds only the voting phase; a commit that keeps failing holds
// that participant's locks until the commit gets through.
//
// Step applies one event; Machine is the transition table.
package twopc
