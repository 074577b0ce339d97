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
)

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

// Deleter is an optional capability: backends that can remove finished
// records (retention) implement it.
type Deleter interface {
	// DeleteFinished deletes up to limit finished records last updated
	// before the given time (unix ns) and reports how many it deleted. A
	// limit <= 0 deletes nothing.
	DeleteFinished(ctx context.Context, updatedBefore int64, limit int) (int, error)
}
