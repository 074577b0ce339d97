// Package store defines the contract between the coordinator runtime and the
// durable storage that holds transaction records.
//
// The runtime owns all protocol logic; a Store only keeps opaque, versioned
// records and a few indexed fields that make recovery and listing cheap. The
// runtime batches the writes of many concurrent transactions into a single
// Commit call (group commit), so a backend should make one Commit one durable,
// atomic write: one fsync for the embedded store, one SQL transaction for a
// database, one MULTI/EXEC or pipeline for Redis.
//
// Every backend must pass the conformance suite in package storetest against
// the real server it targets.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Backends wrap them with %w; callers test with errors.Is.
var (
	// ErrNotFound: no record exists for the gid.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable: the backend could not be reached; the write did not
	// happen or its outcome is unknown, and the caller may retry.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrCorrupt: stored bytes could not be read back.
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrConflict: a versioned write found a different version stored (see
	// Record.Version). Returned wrapped in a *ConflictError.
	ErrConflict = errors.New("store: version conflict")
)

// ConflictError is the error Commit returns when one or more versioned
// records of the batch did not match what is stored. Like any Commit error
// it means that nothing of the batch was written; the caller may drop the
// listed records and commit the rest again.
type ConflictError struct {
	GIDs []string // the records whose expected version did not match
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("store: version conflict on %d record(s): %s", len(e.GIDs), strings.Join(e.GIDs, ", "))
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Record is one global transaction as the store sees it. Data is the
// runtime's encoding of the full transaction state; the other fields are
// copies of values inside Data, kept so a backend can index them.
type Record struct {
	GID      string
	Mode     string // "saga", "tcc", ...
	Status   string // "running", "compensating", "succeeded", ...
	Finished bool   // true when the transaction reached a final status

	CreatedAt int64 // unix nanoseconds
	UpdatedAt int64 // unix nanoseconds

	Data []byte

	// Owner is the coordinator instance that drives this transaction
	// (empty for a single coordinator). Stored and returned as is; Leaser
	// changes it when it claims a record.
	Owner string

	// Version makes a write conditional (fencing), so that of several
	// coordinators sharing a store only the current owner can change a
	// record. 0 means an unconditional write (a single coordinator). For
	// Version == 1, Commit requires that no record with the GID exists; for
	// Version > 1, it requires the stored record to have Version-1. A
	// mismatch fails the whole batch with a *ConflictError. Stored as
	// given and returned by every read; an unconditional write stores 0.
	Version int64

	// Fresh is a hint from the writer: it has established that no record
	// with this GID exists (a gid it minted, or one it just looked up), so
	// a backend may skip looking for an old version to replace. Commit's
	// semantics do not change; it is never stored.
	Fresh bool
}

// ListOptions selects records for List. Zero values mean "no filter".
type ListOptions struct {
	Status    string // exact status match
	Mode      string // exact mode match
	GIDPrefix string
	// Before: only records created strictly before this time (unix ns);
	// used as a cursor: pass the CreatedAt of the last record of a page.
	Before int64
	// BeforeGID breaks ties on CreatedAt for the cursor: with Before set,
	// records whose CreatedAt equals Before are returned only when their GID
	// sorts before BeforeGID. Empty means no tie-break (strictly before).
	BeforeGID string
	Limit     int // at most this many; <= 0 means a backend default of 100
}

// Store is the required contract. Implementations must be safe for
// concurrent use.
type Store interface {
	// Commit durably and atomically writes every record in the batch,
	// replacing any existing record with the same GID. When Commit returns
	// nil, every record is on stable storage (it survives kill -9 and power
	// loss to the degree the medium honours fsync). When it returns an
	// error, none of the batch may be visible. A batch holds at most one
	// record per GID.
	Commit(ctx context.Context, batch []Record) error

	// Get returns the record for gid, or an error wrapping ErrNotFound.
	Get(ctx context.Context, gid string) (Record, error)

	// List returns records matching opts, newest CreatedAt first (ties by
	// GID descending). One List call sees each Commit either entirely or
	// not at all.
	List(ctx context.Context, opts ListOptions) ([]Record, error)

	// Unfinished calls fn for every record with Finished == false, in no
	// particular order. It is used for recovery after a restart. If fn
	// returns an error, iteration stops and that error is returned.
	Unfinished(ctx context.Context, fn func(Record) error) error

	// Close releases resources. Calls after Close return ErrClosed.
	Close() error
}

// Leaser is the capability a store shared by several coordinator
// processes offers, so that each unfinished transaction is driven by one
// live instance at a time. Liveness is judged by the store's own clock
// (the database's now(), Redis key expiry), never by comparing the clocks
// of coordinator hosts. The fencing itself is Record.Version: a claim
// bumps the version, so a stale owner's next write conflicts.
type Leaser interface {
	// Heartbeat records that instance is alive until the store's clock
	// passes now+ttl. Coordinators call it well within ttl.
	Heartbeat(ctx context.Context, instance string, ttl time.Duration) error

	// Release ends instance's liveness at once (a clean shutdown), so that
	// others may claim its records without waiting for the ttl.
	Release(ctx context.Context, instance string) error

	// Claim takes over up to limit unfinished records whose Owner is not a
	// live instance (never heartbeated, expired, or released) and is not
	// instance itself: each gets Owner = instance and Version+1 (a record
	// stored with Version 0 becomes 1), atomically per record, so that two
	// concurrent claims never both take one record. It returns the claimed
	// records as now stored. A record with an empty Owner is claimable.
	Claim(ctx context.Context, instance string, limit int) ([]Record, error)
}

// Migrator is implemented by stores with a schema. Migrate creates or
// upgrades it to the version this build needs; it is idempotent and safe
// to run from several processes at once.
type Migrator interface {
	Migrate(ctx context.Context) error
	// HasSchema reports whether the schema (or key layout stamp) is
	// there already, of whatever version, without changing anything.
	HasSchema(ctx context.Context) (bool, error)
}

// AsyncCommitter is an optional capability: a store whose Commit can be
// split in two, so that a caller can apply its next batch while the last
// one is being fsynced (a pipelined group commit). CommitAsync applies
// batch as Commit would, in order after every earlier call, and returns a
// function that waits until it is durable and reports Commit's outcome.
// Batches become durable in the order they were applied. The caller must
// call wait exactly once and must not act on the batch (tell a participant
// or a client) before wait returned nil. A *ConflictError from
// CommitAsync means nothing of batch was written; any other error from it
// or from wait is a failed Commit.
type AsyncCommitter interface {
	CommitAsync(ctx context.Context, batch []Record) (wait func() error, err error)
}

// Deleter is an optional capability: backends that can remove finished
// records (retention) implement it.
type Deleter interface {
	// DeleteFinished deletes up to limit finished records last updated
	// before the given time (unix ns) and reports how many it deleted. A
	// limit <= 0 deletes nothing.
	DeleteFinished(ctx context.Context, updatedBefore int64, limit int) (int, error)
}

// MetaAny is the expected version that makes PutMeta and DeleteMeta
// unconditional.
const MetaAny int64 = -1

// MaxMetaKey and MaxMetaValue bound a metadata entry; a longer key or value
// is refused with an error wrapping ErrInvalidMeta.
const (
	MaxMetaKey   = 512
	MaxMetaValue = 64 << 10
)

// ErrInvalidMeta: a metadata key is empty or too long, or a value too large.
var ErrInvalidMeta = errors.New("store: invalid metadata entry")

// MetaEntry is one small, durable key/value entry beside the transaction
// records: configuration that several coordinators sharing a store must
// agree on (topic subscriptions, for one). Version is 1 when the key is
// first written and grows by one with every later write; a deleted and
// re-created key starts again at 1.
type MetaEntry struct {
	Key     string
	Value   []byte
	Version int64
}

// Meta is the capability to keep metadata entries. Every backend in this
// repository implements it; the coordinator discovers it by type assertion
// and refuses the calls that need it on a store without it.
//
// Writes are durable when they return nil, like Commit, and visible at once
// to every coordinator sharing the store. Keys are compared as bytes.
type Meta interface {
	// GetMeta returns the entry for key, or an error wrapping ErrNotFound.
	GetMeta(ctx context.Context, key string) (MetaEntry, error)

	// PutMeta writes value under key if the stored version is expected:
	// 0 means the key must be absent, n > 0 that its version is n, MetaAny
	// that anything goes. On a mismatch nothing is written and the error
	// wraps ErrConflict. It returns the new version.
	PutMeta(ctx context.Context, key string, value []byte, expected int64) (int64, error)

	// DeleteMeta removes key if its version is expected (n > 0, or MetaAny).
	// An absent key is an error wrapping ErrNotFound; a version mismatch
	// one wrapping ErrConflict, and nothing is deleted.
	DeleteMeta(ctx context.Context, key string, expected int64) error

	// ListMeta returns every entry whose key starts with prefix (all
	// entries for ""), in ascending key order.
	ListMeta(ctx context.Context, prefix string) ([]MetaEntry, error)
}

// CheckMeta validates a key (and a value, for writes) the way every
// backend must: a non-empty key of at most MaxMetaKey bytes, a value of at
// most MaxMetaValue bytes.
func CheckMeta(key string, value []byte) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidMeta)
	case len(key) > MaxMetaKey:
		return fmt.Errorf("%w: key is %d bytes, at most %d", ErrInvalidMeta, len(key), MaxMetaKey)
	case len(value) > MaxMetaValue:
		return fmt.Errorf("%w: value of %q is %d bytes, at most %d", ErrInvalidMeta, key, len(value), MaxMetaValue)
	}
	return nil
}

// PrefixEnd is the smallest byte string greater than every string that
// starts with p, or nil when there is none (p empty or all 0xff): the
// exclusive upper bound of a prefix scan over byte-ordered keys.
func PrefixEnd(p []byte) []byte {
	s := append([]byte(nil), p...)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}

// MetaConflict builds the error PutMeta and DeleteMeta return on a version
// mismatch.
func MetaConflict(key string, expected, stored int64) error {
	if stored == 0 {
		return fmt.Errorf("%w: metadata %q: expected version %d, but it does not exist", ErrConflict, key, expected)
	}
	return fmt.Errorf("%w: metadata %q: expected version %d, stored %d", ErrConflict, key, expected, stored)
}

// MetaNextVersion checks expected against stored (0: absent) and returns the
// version a write stores, or the conflict error.
func MetaNextVersion(key string, expected, stored int64) (int64, error) {
	if expected != MetaAny && expected != stored {
		return 0, MetaConflict(key, expected, stored)
	}
	return stored + 1, nil
}

// MetaRows is what ScanMeta needs of a query's result: database/sql's
// *sql.Rows and pgx's Rows both have it.
type MetaRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanMeta reads rows of (key, version, value), the key as bytes, into
// entries: the shared tail of the SQL stores' ListMeta.
func ScanMeta(rows MetaRows) ([]MetaEntry, error) {
	var out []MetaEntry
	for rows.Next() {
		var k []byte
		var e MetaEntry
		if err := rows.Scan(&k, &e.Version, &e.Value); err != nil {
			return nil, err
		}
		e.Key = string(k)
		out = append(out, e)
	}
	return out, rows.Err()
}
