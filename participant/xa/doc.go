// Package xa makes a SQL database the resource manager of a Concord
// two-phase-commit branch: the participant's business code stays ordinary
// SQL, and the database's own prepared transactions (MySQL/MariaDB XA,
// PostgreSQL PREPARE TRANSACTION) hold its changes between the vote and
// the decision.
//
// # Usage
//
// Create the package's tables once (CreateTable), then serve one URL with
// Handler, or call the phases yourself:
//
//	Prepare(ctx, db, d, b, work) // phase one: run work in the branch, vote
//	Commit(ctx, db, d, b)        // phase two, commit decision
//	Abort(ctx, db, d, b)         // phase two, abort decision
//	Recover(ctx, db, d)          // prepared branches, for an orphan scan
//	State(ctx, db, d, b)         // a peer's state query (termination protocols)
//
// Handler also serves three-phase commit: can-commit is a 200, pre-commit
// is Prepare, do-commit Commit, abort Abort; ThreePCTimeouts is the
// pre-committed branches' decision timeout (commit on its own). It answers
// the state queries of peers that run a termination protocol with State;
// XA branches do not ask their own.
//
// # Naming
//
// Each branch (gid, branch id) is one prepared transaction named
// XID(gid, branchID): "cx/gid/branch" when that fits MySQL's 64 bytes and
// the ids use the coordinator's alphabet, otherwise a hashed name (see
// XID). The name is derived, not stored, so any process, after any crash,
// finds the branch again.
//
// # Tables
//
// MarkerTable gets one row per branch, inserted inside the branch: it
// commits exactly when the branch commits. A commit of an XID the database
// no longer knows is answered from it: marker present, the branch
// committed (Commit returns nil); absent, it never prepared or was rolled
// back (ErrNotPrepared). AbortTable remembers every abort, committed on
// its own, so that a prepare delivered after its abort (the network may
// reorder them, and an abort may come for a branch that never prepared)
// is refused instead of leaving a prepared transaction nobody will end.
// NameTable maps hashed XIDs back to their ids for Recover. The package
// never deletes rows; purge old ones by created_at once the coordinator
// has forgotten their transactions.
//
// # Guarantees
//
//   - Every operation is idempotent: repeated Prepare votes yes again
//     without running work, repeated Commit and Abort return nil.
//   - Prepare after Abort is refused (ErrRejected), and when Abort returns
//     nil nothing of the branch is prepared or will ever be, even if a
//     Prepare ran concurrently (see Abort for the locking).
//   - Commit never reports success for a branch whose changes are not
//     committed (ErrNotPrepared, ErrInProgress, or a database error).
//   - A prepared branch survives the death of the process and the session
//     that prepared it; Commit and Abort work from any session.
//
// # Limits
//
//   - MySQL 8.0+ or MariaDB 10.5+ (older servers roll back an XA branch
//     when its session disconnects). PostgreSQL needs
//     max_prepared_transactions > 0.
//   - On MySQL, the session that prepared a branch is held until Commit or
//     Abort ends it (see Sessions on MySQL/MariaDB below).
//   - The race guarantee between Prepare and Abort assumes the default
//     isolation levels: READ COMMITTED (PostgreSQL) and REPEATABLE READ or
//     READ COMMITTED (MySQL). Under MySQL SERIALIZABLE, Prepare's abort
//     check takes a gap lock that makes Abort wait for the prepared branch
//     it wants to roll back, until a lock wait timeout. Under PostgreSQL
//     REPEATABLE READ or SERIALIZABLE, a window of one statement remains in
//     which a racing Prepare may miss the abort and prepare: Recover shows
//     such a branch, and an orphan scan ends it.
//   - work must not begin, commit or roll back transactions, nor use
//     temporary tables, LISTEN/NOTIFY or WITH HOLD cursors (PostgreSQL
//     cannot prepare those); on MySQL, work must not run statements that
//     commit implicitly (DDL).
//   - A duplicate delivery of a prepare while the first is still running
//     gets ErrInProgress (retry); the first one's vote counts.
//
// # Sessions on MySQL/MariaDB
//
// A MySQL session that prepared a branch stays attached to its XID; no
// other session may end the branch until it disconnects, and then the
// branch is detached. Detaching proved unreliable on MariaDB 10.11 under
// load: now and then a detached prepared transaction vanished from XA
// RECOVER (still holding its locks) until the server restarted, and its
// commit was lost. So Prepare keeps the session that prepared (one pooled
// connection per branch in doubt), and Commit and Abort end the branch on
// that session. The detached path (XA COMMIT/ROLLBACK from any session,
// XA RECOVER) remains for a participant that restarted, which is exactly
// what Resolver serves. A pool must therefore allow at least as many
// connections as branches may be in doubt at once, plus those that work.
package xa
