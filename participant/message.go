package participant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
)

// The producer side of a transactional message. The producer's local
// transaction writes one barrier row (gid, "check-back", "msg") with reason
// "msg"; the check-back claims the same key with reason "rollback". The
// table's unique key makes exactly one of them win, and the check-back
// waits in the database while the local transaction is in flight, so its
// answer is exact:
//
//   - the local transaction committed first: the row says "msg":
//     committed, deliver;
//   - the check-back got there first (the local transaction never started,
//     rolled back, or has not reached its insert yet): the row says
//     "rollback", and a local transaction that reaches its insert later
//     finds it, is refused (ErrRejected) and rolls back: rolled back, drop.

const (
	msgBranch   = "check-back"
	msgOp       = "msg"
	msgRollback = "rollback"
)

// DoMessage runs fn, the producer's local transaction for message gid,
// together with the barrier row that the check-back reads. It returns nil
// when fn committed (or had already committed for this gid), an error
// wrapping ErrRejected when the check-back already declared the local
// transaction rolled back (fn did not run), fn's error when fn failed
// (rolled back), or a database error; an error wrapping ErrOutcomeUnknown
// means the commit may have happened: leave the decision to the check-back.
func (br *Barrier) DoMessage(ctx context.Context, gid string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if err := validateBranch(Branch{GID: gid, BranchID: msgBranch, Op: OpCheck}); err != nil {
		return err
	}
	if fn == nil {
		return errors.New("participant: Barrier.DoMessage: nil fn")
	}
	tx, err := br.db.BeginTx(ctx, br.txOpts)
	if err != nil {
		return fmt.Errorf("participant: message %s: begin: %w", gid, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	inserted, reason, err := br.claimMessage(ctx, tx, gid, msgOp)
	if err != nil {
		return err
	}
	if !inserted {
		if reason == msgOp {
			return nil // this local transaction committed before
		}
		return fmt.Errorf("%w: message %s: the check-back already declared its local transaction rolled back", ErrRejected, gid)
	}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	committed = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("participant: message %s: commit: %w: %w", gid, ErrOutcomeUnknown, err)
	}
	return nil
}

// CheckBack answers the coordinator's question about message gid: did its
// local transaction commit? A local transaction still in flight is waited
// for (in the database); one that has not started yet is fenced off, so
// the answer never changes afterwards.
func (br *Barrier) CheckBack(ctx context.Context, gid string) (committed bool, err error) {
	if err := validateBranch(Branch{GID: gid, BranchID: msgBranch, Op: OpCheck}); err != nil {
		return false, err
	}
	tx, err := br.db.BeginTx(ctx, br.txOpts)
	if err != nil {
		return false, fmt.Errorf("participant: check-back %s: begin: %w", gid, err)
	}
	defer tx.Rollback()
	inserted, reason, err := br.claimMessage(ctx, tx, gid, msgRollback)
	if err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("participant: check-back %s: commit: %w", gid, err)
	}
	return !inserted && reason == msgOp, nil
}

// claimMessage inserts the message row with the given reason if absent; if
// present it returns the stored reason.
func (br *Barrier) claimMessage(ctx context.Context, tx *sql.Tx, gid, reason string) (inserted bool, stored string, err error) {
	res, err := tx.ExecContext(ctx, br.insertQuery, gid, msgBranch, msgOp, reason)
	if err != nil {
		return false, "", fmt.Errorf("participant: message %s: insert: %w", gid, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, "", fmt.Errorf("participant: message %s: insert: %w", gid, err)
	}
	if n == 1 {
		return true, reason, nil
	}
	if err := tx.QueryRowContext(ctx, br.reasonQuery, gid, msgBranch, msgOp).Scan(&stored); err != nil {
		return false, "", fmt.Errorf("participant: message %s: read: %w", gid, err)
	}
	return false, stored, nil
}

// CheckBackHandler serves the coordinator's check-back calls for messages
// produced with DoMessage: 200 when the local transaction committed, 409
// when it rolled back (or never ran), 503 when the database could not be
// asked (the coordinator asks again later).
func (br *Barrier) CheckBackHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gid := r.Header.Get(HeaderGID)
		if gid == "" {
			http.Error(w, "participant: check-back without a Concord-Gid header", http.StatusBadRequest)
			return
		}
		committed, err := br.CheckBack(r.Context(), gid)
		switch {
		case errors.Is(err, ErrInvalidBranch):
			http.Error(w, err.Error(), http.StatusBadRequest)
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		case committed:
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("committed"))
		default:
			http.Error(w, "the local transaction rolled back", http.StatusConflict)
		}
	})
}
