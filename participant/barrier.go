// Package participant is the participant side of Concord: what a service
// that takes part in a global transaction needs to read the coordinator's
// calls (Branch, FromRequest) and to apply them safely (Barrier).
package participant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// DefaultBarrierTable is the barrier table's name unless WithBarrierTable
// says otherwise.
const DefaultBarrierTable = "concord_barrier"

// ErrInvalidBranch is returned (wrapped) by Barrier.Do when the branch
// identity is incomplete or malformed. It is a programming or routing error,
// not a business refusal: answer it with a client error, do not retry it.
var ErrInvalidBranch = errors.New("participant: invalid branch")

// A Barrier makes a participant's branch operations safe against the three
// anomalies of an unreliable network, using one row per operation in a table
// of the participant's own database:
//
//   - Repeated delivery (idempotency): the coordinator retries calls whose
//     answer it did not get. An operation that already committed is not run
//     again; Do returns nil.
//   - Null compensation: a compensate (or cancel) can arrive for an action
//     (or try) that never ran, for example because the action's request was
//     lost. Do records that the backward operation happened, does not run
//     fn, and returns nil.
//   - Hanging: an action (or try) delayed in the network can arrive after
//     its compensation (or cancel) already ran or was recorded as null.
//     Running it would leave a change that nothing will ever undo, so Do
//     refuses it: it does not run fn and returns an error wrapping
//     ErrRejected. The barrier reports a hanging forward operation as
//     rejected; the global transaction is being rolled back anyway.
//
// Confirm has no pair: it is only made idempotent.
//
// The bookkeeping and fn run in one local transaction, so the barrier row
// exists if and only if fn's changes committed. The table's unique key
// (gid, branch_id, op) serializes concurrent deliveries: a second delivery of
// the same operation, or a compensation racing its action, waits in the
// database until the first transaction ends and then sees its outcome.
//
// A Barrier is safe for concurrent use.
type Barrier struct {
	db      *sql.DB
	dialect Dialect
	table   string
	txOpts  *sql.TxOptions

	insertQuery string
	reasonQuery string
}

// A BarrierOption configures NewBarrier.
type BarrierOption func(*Barrier)

// WithBarrierTable sets the barrier table's name (default
// DefaultBarrierTable). The name may be schema-qualified ("billing.barrier")
// and must consist of letters, digits and underscores.
func WithBarrierTable(name string) BarrierOption {
	return func(b *Barrier) { b.table = name }
}

// WithBarrierTxOptions sets the options of the local transaction Do opens
// (default: the driver's default isolation level, read-write). Under
// PostgreSQL's REPEATABLE READ or SERIALIZABLE, a delivery racing another
// may fail with a serialization error; that error is safe to retry.
func WithBarrierTxOptions(opts *sql.TxOptions) BarrierOption {
	return func(b *Barrier) { b.txOpts = opts }
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// NewBarrier returns a barrier that keeps its rows in db, which speaks
// dialect d. The table must exist: call CreateTable once, or create it with
// your migrations (CreateTable's statement is the reference schema).
func NewBarrier(db *sql.DB, d Dialect, opts ...BarrierOption) (*Barrier, error) {
	if db == nil {
		return nil, errors.New("participant: NewBarrier: nil *sql.DB")
	}
	if !d.valid() {
		return nil, fmt.Errorf("participant: NewBarrier: unknown dialect %v", d)
	}
	b := &Barrier{db: db, dialect: d, table: DefaultBarrierTable}
	for _, o := range opts {
		o(b)
	}
	if len(b.table) > 120 || !tableName.MatchString(b.table) {
		return nil, fmt.Errorf("participant: NewBarrier: invalid table name %q", b.table)
	}
	b.insertQuery = d.insertSQL(b.table)
	b.reasonQuery = d.reasonSQL(b.table)
	return b, nil
}

// CreateTable creates the barrier table if it does not exist yet, and the
// index on created_at that DeleteOlderThan uses (also on a table created
// by an older release). With your own migrations, create that index too
// (named TABLE_created_at, on the column created_at).
func (br *Barrier) CreateTable(ctx context.Context) error {
	if _, err := br.db.ExecContext(ctx, br.dialect.createTableSQL(br.table)); err != nil {
		return fmt.Errorf("participant: create barrier table %s: %w", br.table, err)
	}
	return br.createIndex(ctx)
}

// Do runs fn for branch operation b, inside one local transaction together
// with the barrier's bookkeeping, unless the barrier decides fn must not run
// (see Barrier). fn must do all its work through tx; Do commits tx if fn
// returns nil.
//
// Do returns:
//   - nil when fn ran and committed, and also when fn was skipped because the
//     operation is a repeated delivery or a null compensation: in all three
//     cases the operation is done and the participant should answer success;
//   - an error wrapping ErrRejected when b is a hanging action or try;
//   - fn's error, unchanged, when fn fails; the transaction, barrier row
//     included, is rolled back, so a later retry runs fn again;
//   - an error wrapping ErrInvalidBranch for an incomplete branch;
//   - otherwise a database error (including a deadlock or serialization
//     failure, or a failed commit whose outcome is unknown). Retrying is
//     always safe: the barrier makes the retry run fn at most once in total.
//
// If fn panics, the transaction is rolled back and the panic continues.
func (br *Barrier) Do(ctx context.Context, b Branch, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if err := validateBranch(b); err != nil {
		return err
	}
	if fn == nil {
		return errors.New("participant: Barrier.Do: nil fn")
	}
	tx, err := br.db.BeginTx(ctx, br.txOpts)
	if err != nil {
		return fmt.Errorf("participant: barrier %s: begin: %w", describe(b), err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback() // the error that made us roll back matters more
		}
	}()
	run, err := br.enter(ctx, tx, b)
	if err != nil {
		return err
	}
	if run {
		if err := fn(ctx, tx); err != nil {
			return err
		}
	}
	committed = true // Commit ends tx whether or not it succeeds
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("participant: barrier %s: commit: %w: %w", describe(b), ErrOutcomeUnknown, err)
	}
	return nil
}

// ErrNoBarrierTable is wrapped by Do when the barrier table does not exist:
// the service never called Barrier.CreateTable. The operation did not run;
// the coordinator retries it (it answers 500) until the table is created,
// and its history shows this message.
var ErrNoBarrierTable = errors.New("participant: the barrier table does not exist")

// missingTable recognizes the "no such table" errors of PostgreSQL
// (SQLSTATE 42P01), MySQL/MariaDB (1146) and SQLite, whatever the driver.
func missingTable(err error) bool {
	m := err.Error()
	return strings.Contains(m, "42P01") || strings.Contains(m, "Error 1146") || strings.Contains(m, "no such table")
}

// ErrOutcomeUnknown is wrapped by Do (and DoMessage) when the local
// transaction's commit failed in a way that leaves its outcome unknown (the
// connection broke during COMMIT). The work may have committed; never
// report it as not done.
var ErrOutcomeUnknown = errors.New("participant: the local commit's outcome is unknown")

// enter writes the barrier rows for b in tx and reports whether fn must run.
func (br *Barrier) enter(ctx context.Context, tx *sql.Tx, b Branch) (run bool, err error) {
	inserted, err := br.insert(ctx, tx, b, b.Op, b.Op)
	if err != nil {
		return false, err
	}
	forward, backward := b.Op.Undoes()
	if !backward {
		if inserted {
			return true, nil
		}
		if b.Op == OpConfirm {
			return false, nil // repeated confirm
		}
		// The forward row exists: either this operation committed before
		// (a repeated delivery) or a backward operation got here first.
		var reason string
		err := tx.QueryRowContext(ctx, br.reasonQuery, b.GID, b.BranchID, string(b.Op)).Scan(&reason)
		if err != nil {
			return false, fmt.Errorf("participant: barrier %s: read: %w", describe(b), err)
		}
		if Op(reason) == b.Op {
			return false, nil // repeated delivery
		}
		return false, fmt.Errorf("%w: %s arrived after %s (hanging %s refused by the barrier)",
			ErrRejected, describe(b), reason, b.Op)
	}
	if !inserted {
		return false, nil // repeated compensate or cancel
	}
	// Occupy the forward operation's slot. If it is free, the forward
	// operation never committed: this is a null compensation, and the row
	// (with reason = this backward op) makes a late forward call hang
	// harmlessly instead of applying. If the forward operation is still in
	// flight, this insert waits for it to commit or roll back.
	nullComp, err := br.insert(ctx, tx, b, forward, b.Op)
	if err != nil {
		return false, err
	}
	return !nullComp, nil
}

// insert inserts the row (b.GID, b.BranchID, op, reason) if absent and
// reports whether it did.
func (br *Barrier) insert(ctx context.Context, tx *sql.Tx, b Branch, op, reason Op) (bool, error) {
	res, err := tx.ExecContext(ctx, br.insertQuery, b.GID, b.BranchID, string(op), string(reason))
	if err != nil {
		if missingTable(err) {
			return false, fmt.Errorf("%w: %q (call Barrier.CreateTable once at start): %s: %w", ErrNoBarrierTable, br.table, describe(b), err)
		}
		return false, fmt.Errorf("participant: barrier %s: insert %s row: %w", describe(b), op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("participant: barrier %s: insert %s row: %w", describe(b), op, err)
	}
	return n == 1, nil
}

func validateBranch(b Branch) error {
	switch {
	case b.GID == "":
		return fmt.Errorf("%w: empty gid", ErrInvalidBranch)
	case b.BranchID == "":
		return fmt.Errorf("%w: empty branch id (gid %q)", ErrInvalidBranch, b.GID)
	case len(b.GID) > maxIDLen:
		return fmt.Errorf("%w: gid longer than %d bytes", ErrInvalidBranch, maxIDLen)
	case len(b.BranchID) > maxIDLen:
		return fmt.Errorf("%w: branch id longer than %d bytes", ErrInvalidBranch, maxIDLen)
	case !b.Op.Valid():
		return fmt.Errorf("%w: unknown operation %q", ErrInvalidBranch, b.Op)
	case b.Op == OpState:
		return fmt.Errorf("%w: a state query is not a barrier operation", ErrInvalidBranch)
	}
	return nil
}

// describe names a branch operation in error messages.
func describe(b Branch) string {
	return fmt.Sprintf("%s of %s/%s", b.Op, b.GID, b.BranchID)
}
