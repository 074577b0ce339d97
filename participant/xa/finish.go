package xa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/concordtm/concord/participant"
)

// Commit runs the second phase of branch b after a commit decision: it
// commits the prepared transaction, from any session (the one that
// prepared may be long gone).
//
// It is idempotent and never blind. When the database knows no prepared
// transaction by the branch's XID, Commit looks for the branch's marker
// row: present, the branch committed earlier and Commit returns nil;
// absent, it returns an error wrapping ErrNotPrepared. While another
// session holds the prepared transaction (MySQL: the session that
// prepared it has not been released yet; PostgreSQL: another session is
// ending it), Commit waits and tries again; if ctx ends first, it returns
// an error wrapping ErrInProgress. Any other error is a database error
// after which the commit may or may not have happened: retry.
func Commit(ctx context.Context, db *sql.DB, d Dialect, b participant.Branch) error {
	if err := checkBranch(db, d, b); err != nil {
		return err
	}
	xid := XID(b.GID, b.BranchID)
	xidSQL, err := quote(xid)
	if err != nil {
		return err
	}
	stmt := "COMMIT PREPARED " + xidSQL
	if d == MySQL {
		stmt = "XA COMMIT " + xidSQL
	}
	for wait := newBackoff(); ; {
		if d == MySQL && endOnHeldSession(ctx, xid, stmt) {
			return nil
		}
		_, err := db.ExecContext(ctx, stmt)
		switch {
		case err == nil:
			return nil
		case d.isXIDBusy(err):
			// Another session is ending it right now.
		case !d.isUnknownXID(err):
			return fmt.Errorf("xa: commit %s: %w", describe(b), err)
		default:
			var markers int
			if err := db.QueryRowContext(ctx, d.countSQL(MarkerTable), b.GID, b.BranchID).Scan(&markers); err != nil {
				return fmt.Errorf("xa: commit %s: marker check: %w", describe(b), err)
			}
			if markers > 0 {
				return nil // committed earlier
			}
			if d == Postgres {
				return fmt.Errorf("%w: %s has no prepared transaction %s and did not commit", ErrNotPrepared, describe(b), xidSQL)
			}
			// MySQL answers XAER_NOTA too for an XID that the session
			// which prepared it has not released yet (Prepare closes that
			// session, but the server takes a moment to notice).
			prepared, err := isPrepared(ctx, db, d, xid)
			if err != nil {
				return fmt.Errorf("xa: commit %s: %w", describe(b), err)
			}
			if !prepared {
				return fmt.Errorf("%w: %s has no prepared transaction %s and did not commit", ErrNotPrepared, describe(b), xidSQL)
			}
		}
		if err := wait(ctx); err != nil {
			return fmt.Errorf("%w: commit of %s: %w", ErrInProgress, describe(b), err)
		}
	}
}

// newBackoff returns a function that waits before the next attempt at a
// branch another session holds: 1ms, doubling up to 100ms, or until ctx
// is done (then it returns ctx's error).
func newBackoff() func(ctx context.Context) error {
	d := time.Millisecond
	return func(ctx context.Context) error {
		if testHookWaits != nil {
			testHookWaits()
		}
		t := time.NewTimer(d)
		defer t.Stop()
		d = min(2*d, 100*time.Millisecond)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
}

// testHookWaits, when set by a test, runs each time Commit, Abort, State
// or Prepare is about to wait for another session.
var testHookWaits func()

// Abort runs the second phase of branch b after an abort decision (or a
// null abort: for a branch that never prepared). It first records b in
// AbortTable, committed on its own, so that any later Prepare of b is
// refused; then it rolls back b's prepared transaction if there is one.
// Abort is idempotent; a branch with nothing prepared is fine.
//
// When Abort returns nil, b holds nothing and never will: no prepared
// transaction of b exists and no Prepare of b can succeed any more. This
// holds against a Prepare of b running concurrently on another session:
// Prepare holds a lock on b from before its abort check until its branch
// ends (PostgreSQL: a transaction-level advisory lock; MySQL: the key of
// the marker row, which Abort probes with FOR UPDATE NOWAIT). After
// recording the abort, Abort loops: roll back b's prepared transaction if
// there is one (done); else, if no session holds b's lock (done: any
// Prepare that takes it later sees the abort row and refuses); else wait
// briefly and try again, until the concurrent Prepare either prepares
// (and the next round rolls it back) or gives up. Abort therefore waits
// for a concurrent Prepare, never longer than ctx allows.
//
// Abort returns an error wrapping ErrAlreadyCommitted for a branch that
// committed, and an error wrapping ErrInProgress and ctx's error if ctx
// ends while a concurrent Prepare holds the branch.
func Abort(ctx context.Context, db *sql.DB, d Dialect, b participant.Branch) error {
	if err := checkBranch(db, d, b); err != nil {
		return err
	}
	xid := XID(b.GID, b.BranchID)
	xidSQL, err := quote(xid)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, d.insertAbortSQL(), b.GID, b.BranchID); err != nil {
		return fmt.Errorf("xa: abort %s: record: %w", describe(b), err)
	}
	stmt := "ROLLBACK PREPARED " + xidSQL
	if d == MySQL {
		stmt = "XA ROLLBACK " + xidSQL
	}
	for wait := newBackoff(); ; {
		if d == MySQL && endOnHeldSession(ctx, xid, stmt) {
			return nil
		}
		_, err := db.ExecContext(ctx, stmt)
		switch {
		case err == nil:
			return nil
		case d.isUnknownXID(err):
			st, err := d.probe(ctx, db, b)
			if err != nil {
				return fmt.Errorf("xa: abort %s: %w", describe(b), err)
			}
			switch st {
			case branchIdle:
				return nil
			case branchCommitted:
				return fmt.Errorf("%w: abort of %s refused", ErrAlreadyCommitted, describe(b))
			}
		case d.isXIDBusy(err):
		default:
			return fmt.Errorf("xa: abort %s: %w", describe(b), err)
		}
		// A Prepare of b is running, or its prepared transaction is not
		// released yet: wait and try again.
		if err := wait(ctx); err != nil {
			return fmt.Errorf("%w: abort of %s: waiting for a concurrent prepare: %w", ErrInProgress, describe(b), err)
		}
	}
}

// branchState is what Abort's probe learns about a branch that has no
// prepared transaction the probing session may end.
type branchState int

const (
	branchIdle      branchState = iota // no session holds it, it did not commit
	branchBusy                         // a session holds it (preparing, or prepared and attached)
	branchCommitted                    // its marker row is committed
)

// probe tells whether a session holds b's lock, without waiting for it.
func (d Dialect) probe(ctx context.Context, db *sql.DB, b participant.Branch) (branchState, error) {
	if d == Postgres {
		// In autocommit, the lock is released as soon as it is taken.
		var free bool
		if err := db.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock($1)", lockKey(XID(b.GID, b.BranchID))).Scan(&free); err != nil {
			return 0, fmt.Errorf("probe: %w", err)
		}
		if !free {
			return branchBusy, nil
		}
		var markers int
		if err := db.QueryRowContext(ctx, d.countSQL(MarkerTable), b.GID, b.BranchID).Scan(&markers); err != nil {
			return 0, fmt.Errorf("probe: %w", err)
		}
		if markers > 0 {
			return branchCommitted, nil
		}
		return branchIdle, nil
	}
	// READ COMMITTED: a locking read of an absent key takes no gap lock, so
	// the probe never trips over other branches' rows.
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, fmt.Errorf("probe: %w", err)
	}
	defer tx.Rollback()
	var one int
	err = tx.QueryRowContext(ctx, "SELECT 1 FROM "+MarkerTable+
		" WHERE gid = ? AND branch_id = ? FOR UPDATE NOWAIT", b.GID, b.BranchID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return branchIdle, nil
	case d.isLockBusy(err):
		return branchBusy, nil
	case err != nil:
		return 0, fmt.Errorf("probe: %w", err)
	}
	return branchCommitted, nil
}

// isPrepared reports whether the database lists xid as prepared.
func isPrepared(ctx context.Context, db *sql.DB, d Dialect, xid string) (bool, error) {
	if d == Postgres {
		var n int
		err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_prepared_xacts
			WHERE gid = $1 AND database = current_database()`, xid).Scan(&n)
		if err != nil {
			return false, fmt.Errorf("list prepared transactions: %w", err)
		}
		return n > 0, nil
	}
	list, err := xaRecover(ctx, db)
	if err != nil {
		return false, err
	}
	for _, x := range list {
		if x == xid {
			return true, nil
		}
	}
	return false, nil
}
