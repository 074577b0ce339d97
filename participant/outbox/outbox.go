package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/concordtm/concord/participant"
)

// DefaultTable is the outbox table's name unless WithTable says otherwise.
// The relay's lease table is the same name with "_relay" appended.
const DefaultTable = "concord_outbox"

// Limits on a message's identifiers, in bytes: the column widths.
const (
	MaxIDLen          = 255
	MaxKeyLen         = 255
	MaxDestinationLen = 1024
)

// ErrInvalidMessage is returned (wrapped) by Write for a message that can
// never be stored.
var ErrInvalidMessage = errors.New("outbox: invalid message")

// A Message is one message in the outbox.
type Message struct {
	// Seq is the outbox sequence number, set by the relay; Write ignores it.
	Seq int64
	// Destination tells the sink where the message goes: a broker URL, a
	// topic name, or empty when the sink has a single destination.
	Destination string
	// ID identifies the message for deduplication; Write generates a random
	// one when empty.
	ID string
	// Key orders messages: those with the same key are relayed in sequence
	// order. Empty means unordered.
	Key     string
	Payload []byte
	Headers map[string]string
}

// An Outbox writes messages to, and relays them from, one outbox table.
type Outbox struct {
	dialect participant.Dialect
	table   string
	q       queries
}

// An Option configures New.
type Option func(*Outbox)

// WithTable sets the outbox table's name (default DefaultTable): letters,
// digits and underscores, optionally schema-qualified.
func WithTable(name string) Option { return func(o *Outbox) { o.table = name } }

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// New returns the outbox of dialect d's database.
func New(d participant.Dialect, opts ...Option) (*Outbox, error) {
	o := &Outbox{dialect: d, table: DefaultTable}
	for _, opt := range opts {
		opt(o)
	}
	if d != participant.Postgres && d != participant.MySQL && d != participant.SQLite {
		return nil, fmt.Errorf("outbox: unknown dialect %v", d)
	}
	if len(o.table) > 50 || !tableName.MatchString(o.table) {
		return nil, fmt.Errorf("outbox: invalid table name %q", o.table)
	}
	o.q = newQueries(d, o.table)
	return o, nil
}

// Migrate creates the outbox table, its indexes and the relay's lease table
// if they do not exist yet.
func (o *Outbox) Migrate(ctx context.Context, db *sql.DB) error {
	for _, stmt := range o.q.ddl {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("outbox: migrate %s: %w", o.table, err)
		}
	}
	return nil
}

// Write inserts m into the outbox inside tx, the producer's local
// transaction, and returns the message's ID (m.ID, or a generated one).
// The message is relayed if and only if tx commits.
func (o *Outbox) Write(ctx context.Context, tx *sql.Tx, m Message) (id string, err error) {
	if m.ID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("outbox: message id: %w", err)
		}
		m.ID = hex.EncodeToString(b[:])
	}
	switch {
	case len(m.ID) > MaxIDLen:
		return "", fmt.Errorf("%w: id longer than %d bytes", ErrInvalidMessage, MaxIDLen)
	case len(m.Key) > MaxKeyLen:
		return "", fmt.Errorf("%w: key longer than %d bytes", ErrInvalidMessage, MaxKeyLen)
	case len(m.Destination) > MaxDestinationLen:
		return "", fmt.Errorf("%w: destination longer than %d bytes", ErrInvalidMessage, MaxDestinationLen)
	}
	headers := ""
	if len(m.Headers) > 0 {
		b, err := json.Marshal(m.Headers)
		if err != nil {
			return "", fmt.Errorf("%w: headers: %v", ErrInvalidMessage, err)
		}
		headers = string(b)
	}
	payload := m.Payload
	if payload == nil {
		payload = []byte{}
	}
	if _, err := tx.ExecContext(ctx, o.q.insert, m.Destination, m.ID, m.Key, payload, headers); err != nil {
		return "", fmt.Errorf("outbox: write %s: %w", m.ID, err)
	}
	return m.ID, nil
}

// Requeue puts a parked ('failed') row back in line, with its attempts
// reset; the relay sends it next for its key. It reports whether such a row
// existed.
func (o *Outbox) Requeue(ctx context.Context, db *sql.DB, seq int64) (bool, error) {
	res, err := db.ExecContext(ctx, o.q.requeue, seq)
	if err != nil {
		return false, fmt.Errorf("outbox: requeue %d: %w", seq, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
