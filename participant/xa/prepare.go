package xa

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/concordtm/concord/participant"
)

// Errors. See each operation for when it returns them.
var (
	// ErrNotPrepared is returned (wrapped) by Commit when the branch has
	// no prepared transaction and no committed marker: it never prepared,
	// or it was rolled back. The commit did not happen and never will;
	// the caller must not report it as done.
	ErrNotPrepared = errors.New("xa: branch is not prepared")
	// ErrInProgress is returned (wrapped) when another session is working
	// on the same branch (a concurrent delivery of its prepare, or a
	// prepared transaction its session has not released yet). Retry later.
	ErrInProgress = errors.New("xa: branch is in progress in another session")
	// ErrAlreadyCommitted is returned (wrapped) by Abort for a branch that
	// already committed: the coordinator asked to undo a commit, which
	// 2PC never does. The abort did not happen.
	ErrAlreadyCommitted = errors.New("xa: branch already committed")
)

// cleanupTimeout bounds the statements that end a failed branch, which run
// even when the caller's context is done.
const cleanupTimeout = 10 * time.Second

// CreateTable creates the package's tables (MarkerTable, AbortTable,
// NameTable) in db if they do not exist yet. Run it once per database, or
// take its statements as the reference schema for your migrations.
func CreateTable(ctx context.Context, db *sql.DB, d Dialect) error {
	if err := checkArgs(db, d); err != nil {
		return err
	}
	for _, stmt := range d.createSQL() {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("xa: create tables: %w", err)
		}
	}
	return nil
}

// Prepare runs the first phase of branch b: it starts a transaction branch
// named XID(b.GID, b.BranchID) on one connection of db, records the
// branch's marker row in it, runs work on that connection, and prepares
// the branch, which then holds its changes and locks until Commit or Abort
// ends it, even if this process dies.
//
// work must run all its statements on conn and must not begin, commit or
// roll back a transaction itself.
//
// Prepare returns:
//   - nil when the branch is prepared (a vote yes), including when it was
//     already prepared, or already committed, by an earlier delivery: work
//     does not run again;
//   - an error wrapping participant.ErrRejected when the branch was
//     aborted before it prepared (a late prepare); work does not run;
//   - work's error, unchanged, after rolling the branch back: wrap
//     participant.ErrRejected for a business "no", participant.ErrReadOnly
//     for a read-only vote (work changed nothing, so there is nothing to
//     hold; the package does not detect this itself);
//   - an error wrapping ErrInProgress when another session is preparing
//     the same branch right now;
//   - an error wrapping participant.ErrInvalidBranch for an empty or
//     too long id;
//   - otherwise a database error. If it came from the final prepare
//     statement, the branch may or may not be prepared: retrying Prepare
//     is safe and tells.
//
// If work panics, the branch is rolled back and the panic continues.
func Prepare(ctx context.Context, db *sql.DB, d Dialect, b participant.Branch, work func(ctx context.Context, conn *sql.Conn) error) error {
	if err := checkBranch(db, d, b); err != nil {
		return err
	}
	if work == nil {
		return errors.New("xa: Prepare: nil work")
	}
	xid := XID(b.GID, b.BranchID)
	xidSQL, err := quote(xid)
	if err != nil {
		return err
	}
	if hashed(xid) {
		if _, err := db.ExecContext(ctx, d.insertNameSQL(), xid, b.GID, b.BranchID); err != nil {
			return fmt.Errorf("xa: prepare %s: record XID name: %w", describe(b), err)
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("xa: prepare %s: %w", describe(b), err)
	}
	kept := false // handed to the registry of prepared sessions
	defer func() {
		if !kept {
			conn.Close()
		}
	}()

	started, err := d.start(ctx, conn, xidSQL, xid)
	if err != nil {
		discard(conn)
		return fmt.Errorf("xa: prepare %s: start: %w", describe(b), err)
	}
	if !started {
		// Another session holds the XID: prepared (possibly by an earlier
		// delivery whose answer was lost), or still running.
		prepared, err := isPrepared(ctx, db, d, xid)
		if err != nil {
			return fmt.Errorf("xa: prepare %s: %w", describe(b), err)
		}
		if prepared {
			return nil
		}
		return fmt.Errorf("%w: prepare of %s", ErrInProgress, describe(b))
	}

	open := true // the branch is active on conn and must be rolled back
	defer func() {
		if open {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			if d.rollbackActive(cctx, conn, xidSQL) != nil {
				discard(conn) // closing the session rolls the branch back
			}
		}
	}()

	// The marker row. Its key also serializes, on MySQL, this branch
	// against Abort's probe (see Abort).
	if _, err := conn.ExecContext(ctx, d.insertMarkerSQL(), b.GID, b.BranchID, xid); err != nil {
		if d.isDuplicateKey(err) {
			return nil // committed by an earlier delivery: still a yes
		}
		return fmt.Errorf("xa: prepare %s: marker: %w", describe(b), err)
	}
	// The abort check comes after the branch holds its lock (the advisory
	// lock, or the marker's key): an Abort that recorded its row before
	// this read is seen here; one that recorded it later finds this branch
	// busy or prepared and waits for it, or rolls it back.
	var aborted int
	if err := conn.QueryRowContext(ctx, d.countSQL(AbortTable), b.GID, b.BranchID).Scan(&aborted); err != nil {
		return fmt.Errorf("xa: prepare %s: abort check: %w", describe(b), err)
	}
	if aborted > 0 {
		return fmt.Errorf("%w: %s arrived after the branch's abort (late prepare refused)", participant.ErrRejected, describe(b))
	}

	if err := work(ctx, conn); err != nil {
		return err
	}

	open = false
	perr := d.prepare(ctx, conn, xidSQL)
	if perr != nil {
		// After a failed prepare the session's state is unknown; closing it
		// rolls back whatever did not prepare.
		discard(conn)
		return fmt.Errorf("xa: prepare %s: %w", describe(b), perr)
	}
	if d == MySQL {
		// On MySQL the session that prepared stays attached to the XID: no
		// other session may end it until this one disconnects. Detaching
		// (closing the session) proved unreliable on MariaDB 10.11 under
		// load: a detached prepared transaction could vanish from XA
		// RECOVER until a restart. So the session is kept, and Commit or
		// Abort end the branch on it; the detached path is left for a
		// participant that restarted.
		holdSession(xid, conn)
		kept = true
	}
	return nil
}

// The sessions that prepared MySQL branches and still hold them, by XID.
var prepared = struct {
	sync.Mutex
	m map[string]*sql.Conn
}{m: map[string]*sql.Conn{}}

func holdSession(xid string, conn *sql.Conn) {
	prepared.Lock()
	defer prepared.Unlock()
	if old := prepared.m[xid]; old != nil {
		discard(old)
		old.Close()
	}
	prepared.m[xid] = conn
}

// endOnHeldSession runs stmt (XA COMMIT or XA ROLLBACK) on the session that
// prepared xid, if this process still holds it, and reports whether that
// ended the branch. On failure the session is closed (detaching the
// branch), and the caller goes on with the detached path.
func endOnHeldSession(ctx context.Context, xid, stmt string) bool {
	prepared.Lock()
	conn := prepared.m[xid]
	delete(prepared.m, xid)
	prepared.Unlock()
	if conn == nil {
		return false
	}
	if _, err := conn.ExecContext(ctx, stmt); err != nil {
		discard(conn)
		conn.Close()
		return false
	}
	conn.Close() // the session is clean again: back to the pool
	return true
}

// start begins the branch on conn. It reports false, with conn left
// outside any transaction, when another session holds the branch's XID.
func (d Dialect) start(ctx context.Context, conn *sql.Conn, xidSQL, xid string) (bool, error) {
	if d == MySQL {
		_, err := conn.ExecContext(ctx, "XA START "+xidSQL)
		if mysqlNumber(err) == myDUPID {
			return false, nil
		}
		return err == nil, err
	}
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return false, err
	}
	// Abort's probe takes the same lock for an instant (see probe), so a
	// refusal may be that probe, not a concurrent Prepare: try again after
	// 1, 2, 4 and 8 ms before reporting the branch busy. A failed try
	// does not abort the transaction.
	var locked bool
	var err error
	wait := newBackoff()
	for tries := 1; ; tries++ {
		err = conn.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock($1)", lockKey(xid)).Scan(&locked)
		if err != nil || locked || tries == 5 {
			break
		}
		if err = wait(ctx); err != nil {
			break
		}
	}
	if err == nil && locked {
		return true, nil
	}
	if _, rerr := conn.ExecContext(ctx, "ROLLBACK"); rerr != nil && err == nil {
		err = rerr
	}
	return false, err
}

// prepare ends the active branch on conn and prepares it.
func (d Dialect) prepare(ctx context.Context, conn *sql.Conn, xidSQL string) error {
	if d == MySQL {
		if _, err := conn.ExecContext(ctx, "XA END "+xidSQL); err != nil {
			return err
		}
		_, err := conn.ExecContext(ctx, "XA PREPARE "+xidSQL)
		return err
	}
	_, err := conn.ExecContext(ctx, "PREPARE TRANSACTION "+xidSQL)
	return err
}

// rollbackActive rolls back the active (not prepared) branch on conn.
func (d Dialect) rollbackActive(ctx context.Context, conn *sql.Conn, xidSQL string) error {
	if d == MySQL {
		if _, err := conn.ExecContext(ctx, "XA END "+xidSQL); err != nil {
			return err
		}
		_, err := conn.ExecContext(ctx, "XA ROLLBACK "+xidSQL)
		return err
	}
	_, err := conn.ExecContext(ctx, "ROLLBACK")
	return err
}

// discard makes database/sql close conn's session instead of pooling it.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

func checkArgs(db *sql.DB, d Dialect) error {
	if db == nil {
		return errors.New("xa: nil *sql.DB")
	}
	if !d.valid() {
		return fmt.Errorf("xa: unknown dialect %v", d)
	}
	return nil
}

func checkBranch(db *sql.DB, d Dialect, b participant.Branch) error {
	if err := checkArgs(db, d); err != nil {
		return err
	}
	switch {
	case b.GID == "":
		return fmt.Errorf("%w: empty gid", participant.ErrInvalidBranch)
	case b.BranchID == "":
		return fmt.Errorf("%w: empty branch id (gid %q)", participant.ErrInvalidBranch, b.GID)
	case len(b.GID) > maxIDLen:
		return fmt.Errorf("%w: gid longer than %d bytes", participant.ErrInvalidBranch, maxIDLen)
	case len(b.BranchID) > maxIDLen:
		return fmt.Errorf("%w: branch id longer than %d bytes", participant.ErrInvalidBranch, maxIDLen)
	}
	return nil
}

// describe names a branch in error messages.
func describe(b participant.Branch) string {
	return fmt.Sprintf("%s/%s", b.GID, b.BranchID)
}
