// Package twophase is the participant side of a generic two-phase commit:
// for a service whose resource is not a database's own prepared
// transaction (see participant/xa for that), but business rows it reserves
// in phase one and makes final or releases in phase two. The prepared
// state is durable in the participant's own database (PostgreSQL,
// MySQL/MariaDB or SQLite through database/sql), in one table next to the
// business tables.
//
// # Model
//
// Every branch (gid, branch id) has at most one row in the table, in one
// of three states:
//
//	prepared  — phase one said yes; the intent waits for the decision
//	committed — the intent was applied
//	aborted   — the reservation was released, the vote was no, or an abort
//	            came before any prepare (a null abort)
//
// Each operation runs the caller's business code and the row's change in
// one local transaction, so the row says exactly what happened to the
// business tables:
//
//	Prepare(ctx, b, check, intent) // check may lock or reserve, or vote no
//	Commit(ctx, b, apply)          // apply the stored intent
//	Abort(ctx, b, undo)            // release what check reserved
//
// Handler serves the three on one URL, the way the coordinator calls a
// 2PC branch (the operation travels in the Concord-Op header). Pending
// lists the prepared branches, for a participant that waited too long for
// phase two to ask the coordinator (client.Decision) instead of guessing.
//
// # Guarantees
//
//   - Prepare is idempotent: a repeated prepare of a prepared (or
//     committed) branch votes yes again without running check. A repeated
//     prepare of a branch that voted no votes no again.
//   - Prepare after Abort is refused (an error wrapping
//     participant.ErrRejected): an abort may overtake its prepare in the
//     network, and a late prepare must not reserve what no decision will
//     ever release.
//   - Commit never applies blindly: a branch that never prepared gets
//     ErrNotPrepared, and nothing runs. Repeated commits return nil.
//   - Abort of a branch that never prepared records a null abort and runs
//     nothing; repeated aborts return nil. Abort of a committed branch
//     returns ErrAlreadyCommitted: 2PC never undoes a commit.
//   - Concurrent deliveries of the same branch wait for each other in the
//     database (the table's primary key and locking reads), so check,
//     apply and undo each run at most once per branch.
//
// # What blocks
//
// A prepared branch holds whatever check reserved until phase two reaches
// it. If the coordinator is down, that is until it restarts and resends the
// decision, or until the participant asks: Pending lists the branches, and
// client.Decision answers "commit", "abort" or "pending" (presumed abort:
// a gid the coordinator does not know as committed is "abort"). Resolver
// does that on a timer; with Resolver.Termination it also asks the peers
// the coordinator named at prepare (Concord-Peers, kept with the intent),
// the cooperative termination protocol: a peer that knows the outcome, or
// that has not voted (it aborts on being asked), settles it without the
// coordinator. When every peer is prepared too, it stays blocked.
//
// # Three-phase commit
//
// Store.ThreePC serves a 3PC branch on the same table, running the pure
// participant machine of internal/protocol/threepc: can-commit asks
// Resource.CanCommit (no work; the yes is kept in memory only), pre-commit
// runs Check and stores the intent like a prepare (state precommitted),
// do-commit runs Apply, abort runs Undo. Unlike a prepared 2PC branch, a
// 3PC branch never asks the coordinator: a voted branch that hears no
// pre-commit within VoteTimeout aborts, and a precommitted branch that
// hears no do-commit or abort within DecisionTimeout commits on its own
// (ThreePC.Run sweeps the timers, by the Store's clock). That is why 3PC
// does not block when the coordinator dies, and why it can diverge: a
// branch that missed an abort commits. ThreePCConfig.Termination runs
// Skeen's termination protocol instead: on a timeout the branch asks its
// peers (named by the coordinator, kept with the vote and the intent) and
// decides by their answers; that removes the divergence of a coordinator
// crash between two pre-commits, not that of a partition.
//
// Both helpers' Handlers answer a peer's state query (Concord-Op: state)
// from the branch's record; a branch that has not voted (2PC) or not
// pre-committed (3PC) is aborted durably before it answers "aborted".
//
// # Databases
//
// Open SQLite with a busy timeout and immediate transactions (for
// modernc.org/sqlite: "?_pragma=busy_timeout(5000)&_txlock=immediate") so
// that concurrent deliveries queue instead of failing with SQLITE_BUSY.
// PostgreSQL and MySQL run at their default isolation levels (READ
// COMMITTED, REPEATABLE READ); under stricter levels a racing delivery may
// fail with a serialization error, which the coordinator retries.
package twophase
