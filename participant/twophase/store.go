package twophase

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/concordtm/concord/participant"
)

// DefaultTable is the table's name unless WithTable says otherwise.
const DefaultTable = "concord_2pc"

// State is where a branch stands in this participant.
type State string

// States. StateNone is a branch this participant has no row for.
const (
	StateNone      State = ""
	StatePrepared  State = "prepared"
	StateCommitted State = "committed"
	StateAborted   State = "aborted"
	// StatePreCommitted is a 3PC branch that did its work at pre-commit
	// and waits for do-commit, abort or its own timeout (see ThreePC). A
	// 2PC Commit or Abort ends it like a prepared branch; Pending does not
	// list it: it never needs the coordinator's answer.
	StatePreCommitted State = "precommitted"
)

// Errors, tested with errors.Is. A refused prepare wraps
// participant.ErrRejected instead (it is a vote no).
var (
	// ErrNotPrepared is returned (wrapped) by Commit for a branch that
	// never prepared here, or that was aborted: nothing was applied and the
	// caller must not report the commit as done.
	ErrNotPrepared = errors.New("twophase: branch is not prepared")
	// ErrAlreadyCommitted is returned (wrapped) by Abort for a branch that
	// committed: 2PC never undoes a commit, so nothing was undone.
	ErrAlreadyCommitted = errors.New("twophase: branch already committed")
)

// CheckFunc is phase one's business logic: validate, lock or reserve,
// through tx only. Return an error wrapping participant.ErrRejected to vote
// no, or participant.ErrReadOnly to vote read-only (nothing to commit);
// either way, everything check did is rolled back.
type CheckFunc func(ctx context.Context, tx *sql.Tx) error

// ApplyFunc is phase two's business logic, through tx only: make the
// stored intent final (commit), or release what check reserved (abort). It
// must not refuse: a commit or abort that fails is retried until it works.
type ApplyFunc func(ctx context.Context, tx *sql.Tx, intent []byte) error

// Store keeps the prepared state of a participant's 2PC branches in one
// table of its database. A Store is safe for concurrent use.
type Store struct {
	db      *sql.DB
	dialect participant.Dialect
	table   string
	txOpts  *sql.TxOptions
	now     func() time.Time
	q       queries
}

// An Option configures New.
type Option func(*Store)

// WithTable sets the table's name (default DefaultTable). The name may be
// schema-qualified and must consist of letters, digits and underscores.
func WithTable(name string) Option { return func(s *Store) { s.table = name } }

// WithTxOptions sets the options of the local transactions (default: the
// driver's default isolation level, read-write).
func WithTxOptions(o *sql.TxOptions) Option { return func(s *Store) { s.txOpts = o } }

// WithClock sets the clock that stamps prepared_at and decided_at (default
// time.Now).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// New returns a Store that keeps its rows in db, which speaks dialect d.
// The table must exist: call CreateTable once, or create it with your
// migrations (CreateTable's statement is the reference schema). A table
// created before the termination protocols lacks the column peers:
// CreateTable adds it; with your own migrations, add it (PostgreSQL and
// SQLite: peers TEXT; MySQL/MariaDB: peers LONGBLOB) before upgrading.
func New(db *sql.DB, d participant.Dialect, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("twophase: New: nil *sql.DB")
	}
	if !validDialect(d) {
		return nil, fmt.Errorf("twophase: New: unknown dialect %v", d)
	}
	s := &Store{db: db, dialect: d, table: DefaultTable, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if len(s.table) > 120 || !tableName.MatchString(s.table) {
		return nil, fmt.Errorf("twophase: New: invalid table name %q", s.table)
	}
	s.q = newQueries(d, s.table)
	return s, nil
}

// CreateTable creates the table if it does not exist yet, and adds the
// peers column (the termination protocols' peers, kept with the intent) to
// a table created by an older release.
func (s *Store) CreateTable(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, s.q.create); err != nil {
		return fmt.Errorf("twophase: create table %s: %w", s.table, err)
	}
	rows, err := s.db.QueryContext(ctx, s.q.hasPeers)
	if err == nil {
		return rows.Close()
	}
	if _, err := s.db.ExecContext(ctx, s.q.addPeers); err != nil {
		return fmt.Errorf("twophase: add column peers to %s: %w", s.table, err)
	}
	return nil
}

// Prepare is phase one of branch b: in one local transaction it runs check
// and stores intent with the branch in state prepared, then votes.
//
// Prepare returns:
//   - nil: vote yes. The branch is prepared (check ran and committed with
//     the row), or was already prepared or committed (check is not run
//     again);
//   - an error wrapping participant.ErrRejected: vote no. check said no
//     (its changes are rolled back and the no is recorded, so a repeated
//     prepare says no again), or the branch was aborted before this
//     prepare arrived;
//   - participant.ErrReadOnly (wrapped) when check returned it: nothing is
//     kept and nothing is recorded;
//   - an error wrapping participant.ErrInvalidBranch for a bad identity;
//   - otherwise check's or the database's error: nothing is prepared, and
//     a retry is safe.
func (s *Store) Prepare(ctx context.Context, b participant.Branch, check CheckFunc, intent []byte) error {
	return s.prepareAs(ctx, StatePrepared, b, check, intent)
}

// prepareAs is Prepare leaving the branch in state st (prepared, or
// precommitted for 3PC).
func (s *Store) prepareAs(ctx context.Context, st State, b participant.Branch, check CheckFunc, intent []byte) error {
	if err := validate(b); err != nil {
		return err
	}
	if check == nil {
		return errors.New("twophase: Prepare: nil check")
	}
	if intent == nil {
		intent = []byte{} // a prepared row always has an intent, even an empty one
	}
	var rejected error
	err := s.inTx(ctx, "prepare", b, func(tx *sql.Tx) error {
		now := s.now().UnixMilli()
		inserted, err := s.insertPeers(ctx, tx, b, st, intent, now, b.Peers)
		if err != nil {
			return err
		}
		if !inserted {
			state, _, err := s.read(ctx, tx, s.q.read, b)
			if err != nil {
				return err
			}
			if state == StateAborted {
				return fmt.Errorf("%w: %s: the branch is aborted (the abort came first, or an earlier prepare voted no)",
					participant.ErrRejected, describe("prepare", b))
			}
			return nil // prepared, precommitted or committed: a repeated delivery votes yes again
		}
		if err := check(ctx, tx); err != nil {
			if errors.Is(err, participant.ErrRejected) {
				rejected = err
			}
			return err
		}
		return nil
	})
	if errors.Is(err, participant.ErrReadOnly) && st == StatePrepared && len(b.Peers) > 0 {
		// A read-only vote is a yes: a peer asking about the branch must
		// not take it for "not voted" (see StateReadOnly). If this record
		// fails, the vote fails too, and the coordinator asks again.
		if rerr := s.inTx(ctx, "record read-only", b, func(tx *sql.Tx) error {
			_, err := s.insert(ctx, tx, b, StateReadOnly, nil, s.now().UnixMilli())
			return err
		}); rerr != nil {
			return rerr
		}
	}
	if rejected != nil {
		// Remember the no, best effort: if this fails, a repeated prepare
		// just runs check again.
		_ = s.inTx(ctx, "record no", b, func(tx *sql.Tx) error {
			_, err := s.insert(ctx, tx, b, StateAborted, nil, s.now().UnixMilli())
			return err
		})
	}
	return err
}

// Commit is phase two after a commit decision: in one local transaction it
// runs apply with the stored intent and marks the branch committed.
//
// Commit returns nil when the branch committed, now or before (apply runs
// once); an error wrapping ErrNotPrepared, without running apply, when the
// branch never prepared or was aborted; apply's or the database's error
// otherwise (nothing committed; retry).
func (s *Store) Commit(ctx context.Context, b participant.Branch, apply ApplyFunc) error {
	return s.finish(ctx, "commit", b, apply)
}

// Abort is phase two after an abort decision: in one local transaction it
// runs undo with the stored intent and marks the branch aborted. For a
// branch that never prepared it runs nothing and records a null abort,
// which refuses a later prepare.
//
// Abort returns nil when the branch is aborted, now or before (undo runs
// at most once); an error wrapping ErrAlreadyCommitted, without running
// undo, for a committed branch; undo's or the database's error otherwise
// (nothing changed; retry).
func (s *Store) Abort(ctx context.Context, b participant.Branch, undo ApplyFunc) error {
	return s.finish(ctx, "abort", b, undo)
}

func (s *Store) finish(ctx context.Context, op string, b participant.Branch, fn ApplyFunc) error {
	if err := validate(b); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("twophase: %s: nil func", op)
	}
	target := StateCommitted
	if op == "abort" {
		target = StateAborted
	}
	return s.inTx(ctx, op, b, func(tx *sql.Tx) error {
		state, intent, err := s.read(ctx, tx, s.q.lock, b)
		if err != nil {
			return err
		}
		if state == StateNone && target == StateAborted {
			// Null abort. If a prepare of the branch is in flight, the
			// insert waits for it; if that prepare committed, the insert
			// does nothing and the branch is read again below.
			inserted, err := s.insert(ctx, tx, b, StateAborted, nil, s.now().UnixMilli())
			if err != nil || inserted {
				return err
			}
			if state, intent, err = s.read(ctx, tx, s.q.lock, b); err != nil {
				return err
			}
		}
		switch {
		case state == target:
			return nil // repeated delivery
		case state == StateReadOnly:
			// Voted read-only: nothing to apply or undo; record the end.
			_, err := tx.ExecContext(ctx, s.q.decide, string(target), s.now().UnixMilli(), b.GID, b.BranchID)
			return err
		case state == StateNone:
			return fmt.Errorf("%w: %s: the branch never prepared here", ErrNotPrepared, describe(op, b))
		case state == StateAborted:
			return fmt.Errorf("%w: %s: the branch is aborted", ErrNotPrepared, describe(op, b))
		case state == StateCommitted:
			return fmt.Errorf("%w: %s", ErrAlreadyCommitted, describe(op, b))
		}
		if err := fn(ctx, tx, intent); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q.decide, string(target), s.now().UnixMilli(), b.GID, b.BranchID)
		if err != nil {
			return fmt.Errorf("twophase: %s: mark %s: %w", describe(op, b), target, err)
		}
		return nil
	})
}

// State returns where branch (gid, branchID) stands: StateNone if this
// participant has no row for it.
func (s *Store) State(ctx context.Context, gid, branchID string) (State, error) {
	var st string
	err := s.db.QueryRowContext(ctx, s.q.state, gid, branchID).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return StateNone, nil
	}
	if err != nil {
		return StateNone, fmt.Errorf("twophase: state of %s/%s: %w", gid, branchID, err)
	}
	return State(st), nil
}

// Peers returns the peers the coordinator named when branch (gid,
// branchID) prepared or pre-committed here (none for a branch without a
// row, or prepared without peers).
func (s *Store) Peers(ctx context.Context, gid, branchID string) ([]participant.Peer, error) {
	var raw sql.NullString
	err := s.db.QueryRowContext(ctx, s.q.peers, gid, branchID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !raw.Valid) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("twophase: peers of %s/%s: %w", gid, branchID, err)
	}
	return participant.ParsePeers(raw.String)
}

// Prepared is a branch that voted yes and has not heard the decision.
type Prepared struct {
	GID, BranchID string
	Intent        []byte
	PreparedAt    time.Time
}

// Pending lists the prepared branches, oldest first. A participant runs it
// now and then (and at startup), and for each branch prepared longer ago
// than it expects phase two to take, asks the coordinator
// (client.Decision) and calls Commit or Abort with the answer. It never
// decides on its own: the coordinator may have decided commit and told the
// other participants.
func (s *Store) Pending(ctx context.Context) ([]Prepared, error) {
	rows, err := s.db.QueryContext(ctx, s.q.pending)
	if err != nil {
		return nil, fmt.Errorf("twophase: pending: %w", err)
	}
	defer rows.Close()
	var out []Prepared
	for rows.Next() {
		var p Prepared
		var at int64
		if err := rows.Scan(&p.GID, &p.BranchID, &p.Intent, &at); err != nil {
			return nil, fmt.Errorf("twophase: pending: %w", err)
		}
		p.PreparedAt = time.UnixMilli(at)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("twophase: pending: %w", err)
	}
	return out, nil
}

// precommitted lists the 3PC branches waiting in state precommitted.
func (s *Store) precommitted(ctx context.Context) ([]Prepared, error) {
	rows, err := s.db.QueryContext(ctx, s.q.precommitted)
	if err != nil {
		return nil, fmt.Errorf("twophase: precommitted: %w", err)
	}
	defer rows.Close()
	var out []Prepared
	for rows.Next() {
		var p Prepared
		var at int64
		if err := rows.Scan(&p.GID, &p.BranchID, &p.Intent, &at); err != nil {
			return nil, fmt.Errorf("twophase: precommitted: %w", err)
		}
		p.PreparedAt = time.UnixMilli(at)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("twophase: precommitted: %w", err)
	}
	return out, nil
}

// nullAbort records branch b as aborted if it has no row, running nothing,
// and reports whether it did (false: the branch has a row already).
func (s *Store) nullAbort(ctx context.Context, b participant.Branch) (bool, error) {
	var inserted bool
	err := s.inTx(ctx, "abort", b, func(tx *sql.Tx) error {
		var err error
		inserted, err = s.insert(ctx, tx, b, StateAborted, nil, s.now().UnixMilli())
		return err
	})
	return inserted, err
}

// inTx runs fn in a local transaction and commits it if fn returns nil.
func (s *Store) inTx(ctx context.Context, op string, b participant.Branch, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, s.txOpts)
	if err != nil {
		return fmt.Errorf("twophase: %s: begin: %w", describe(op, b), err)
	}
	done := false
	defer func() {
		if !done {
			_ = tx.Rollback() // the error that made us roll back matters more
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	done = true // Commit ends tx whether or not it succeeds
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("twophase: %s: commit: %w", describe(op, b), err)
	}
	return nil
}

// insert inserts the branch's row if absent and reports whether it did.
func (s *Store) insert(ctx context.Context, tx *sql.Tx, b participant.Branch, st State, intent []byte, now int64) (bool, error) {
	return s.insertPeers(ctx, tx, b, st, intent, now, nil)
}

// insertPeers is insert keeping peers with the row.
func (s *Store) insertPeers(ctx context.Context, tx *sql.Tx, b participant.Branch, st State, intent []byte, now int64, peers []participant.Peer) (bool, error) {
	var enc any // NULL without peers
	if len(peers) > 0 {
		enc = participant.EncodePeers(peers)
	}
	res, err := tx.ExecContext(ctx, s.q.insert, b.GID, b.BranchID, string(st), intent, now, now, enc)
	if err != nil {
		return false, fmt.Errorf("twophase: %s: insert: %w", describe(string(st), b), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("twophase: %s: insert: %w", describe(string(st), b), err)
	}
	return n == 1, nil
}

// read reads the branch's state and intent with query (a locking read).
func (s *Store) read(ctx context.Context, tx *sql.Tx, query string, b participant.Branch) (State, []byte, error) {
	var st string
	var intent []byte
	err := tx.QueryRowContext(ctx, query, b.GID, b.BranchID).Scan(&st, &intent)
	if errors.Is(err, sql.ErrNoRows) {
		return StateNone, nil, nil
	}
	if err != nil {
		return StateNone, nil, fmt.Errorf("twophase: read %s/%s: %w", b.GID, b.BranchID, err)
	}
	return State(st), intent, nil
}

func validate(b participant.Branch) error {
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

// describe names a branch operation in error messages.
func describe(op string, b participant.Branch) string {
	return fmt.Sprintf("%s of %s/%s", op, b.GID, b.BranchID)
}
