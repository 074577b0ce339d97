package participant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// DefaultInboxTable is the inbox table's name unless WithInboxTable says
// otherwise.
const DefaultInboxTable = "concord_inbox"

// maxMessageIDLen bounds message IDs, in bytes; it is the column width.
const maxMessageIDLen = 255

// ErrInvalidMessage is returned (wrapped) by Inbox.Handle for an empty or
// over-long message ID: a producer bug, not worth retrying.
var ErrInvalidMessage = errors.New("participant: invalid message")

// An Inbox makes a message consumer effectively-once on top of a broker's
// at-least-once delivery: Handle records the message's ID in a table of the
// consumer's own database inside the same local transaction as the
// consumer's changes, so the changes commit exactly once however often the
// message is delivered. It is the consumer-side twin of Barrier.
//
// Concurrent deliveries of one message serialize on the table's primary
// key: the second waits for the first transaction to end, then either runs
// (the first rolled back) or sees the duplicate (the first committed).
//
// Rows are kept until you delete them; a message redelivered after its row
// was deleted is handled again, so keep rows longer than the broker may
// redeliver (for example delete rows older than a week with your own job,
// on the processed_at column).
//
// An Inbox is safe for concurrent use.
type Inbox struct {
	db      *sql.DB
	dialect Dialect
	table   string
	txOpts  *sql.TxOptions
	insert  string
}

// An InboxOption configures NewInbox.
type InboxOption func(*Inbox)

// WithInboxTable sets the inbox table's name (default DefaultInboxTable),
// with the same rules as WithBarrierTable.
func WithInboxTable(name string) InboxOption { return func(in *Inbox) { in.table = name } }

// WithInboxTxOptions sets the options of the local transaction Handle
// opens (default: the driver's default).
func WithInboxTxOptions(opts *sql.TxOptions) InboxOption { return func(in *Inbox) { in.txOpts = opts } }

// NewInbox returns an inbox that keeps its rows in db, which speaks
// dialect d. Create the table with CreateTable or your migrations.
func NewInbox(db *sql.DB, d Dialect, opts ...InboxOption) (*Inbox, error) {
	if db == nil {
		return nil, errors.New("participant: NewInbox: nil *sql.DB")
	}
	if !d.valid() {
		return nil, fmt.Errorf("participant: NewInbox: unknown dialect %v", d)
	}
	in := &Inbox{db: db, dialect: d, table: DefaultInboxTable}
	for _, o := range opts {
		o(in)
	}
	if len(in.table) > 120 || !tableName.MatchString(in.table) {
		return nil, fmt.Errorf("participant: NewInbox: invalid table name %q", in.table)
	}
	switch d {
	case Postgres:
		in.insert = "INSERT INTO " + in.table + " (message_id) VALUES ($1) ON CONFLICT DO NOTHING"
	case MySQL:
		in.insert = "INSERT IGNORE INTO " + in.table + " (message_id) VALUES (?)"
	default:
		in.insert = "INSERT OR IGNORE INTO " + in.table + " (message_id) VALUES (?)"
	}
	return in, nil
}

// CreateTable creates the inbox table if it does not exist yet.
func (in *Inbox) CreateTable(ctx context.Context) error {
	var ddl string
	switch in.dialect {
	case Postgres:
		ddl = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	message_id   VARCHAR(%d) PRIMARY KEY,
	processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`, in.table, maxMessageIDLen)
	case MySQL:
		// VARBINARY: IDs compare byte for byte.
		ddl = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	message_id   VARBINARY(%d) PRIMARY KEY,
	processed_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB`, in.table, maxMessageIDLen)
	default:
		ddl = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	message_id   TEXT PRIMARY KEY,
	processed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)`, in.table)
	}
	if _, err := in.db.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("participant: create inbox table %s: %w", in.table, err)
	}
	return nil
}

// Handle runs fn for the message with ID messageID unless that message was
// already handled, in one local transaction with the inbox row. fn must do
// all its work through tx; Handle commits tx if fn returns nil.
//
// Handle returns ran = true when fn ran and committed, and ran = false with
// a nil error for a duplicate: either way the consumer should acknowledge
// the message. When fn fails, Handle returns its error unchanged and rolls
// back, inbox row included, so a redelivery runs fn again. Any other error
// (a database error, or a commit whose outcome is unknown) is safe to
// answer by redelivering: the inbox lets fn commit at most once.
func (in *Inbox) Handle(ctx context.Context, messageID string, fn func(ctx context.Context, tx *sql.Tx) error) (ran bool, err error) {
	switch {
	case messageID == "":
		return false, fmt.Errorf("%w: empty message id", ErrInvalidMessage)
	case len(messageID) > maxMessageIDLen:
		return false, fmt.Errorf("%w: message id longer than %d bytes", ErrInvalidMessage, maxMessageIDLen)
	case fn == nil:
		return false, errors.New("participant: Inbox.Handle: nil fn")
	}
	tx, err := in.db.BeginTx(ctx, in.txOpts)
	if err != nil {
		return false, fmt.Errorf("participant: inbox %q: begin: %w", messageID, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback() // the error that made us roll back matters more
		}
	}()
	res, err := tx.ExecContext(ctx, in.insert, messageID)
	if err != nil {
		return false, fmt.Errorf("participant: inbox %q: insert: %w", messageID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("participant: inbox %q: insert: %w", messageID, err)
	}
	if n == 0 {
		return false, nil // a duplicate; rolling back releases nothing of note
	}
	if err := fn(ctx, tx); err != nil {
		return false, err
	}
	committed = true
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("participant: inbox %q: commit: %w", messageID, err)
	}
	return true, nil
}
