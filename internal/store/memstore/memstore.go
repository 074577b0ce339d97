// Package memstore is an in-memory store.Store for unit tests of the
// runtime and for the simulator. It keeps nothing across restarts of the
// process, but otherwise honours the whole contract: Commit is atomic,
// records are copied in and out, versioned writes are fenced, and it
// implements store.Deleter, store.Leaser and store.Meta.
//
// Leases are judged by the Store's clock: the monotonic wall clock by
// default, or any function installed with SetClock, so tests of the runtime
// can expire an instance without waiting.
//
// A Store is cheap to create; List and DeleteFinished sort the matching
// records on every call, which is fine for the thousands of records tests
// hold but not meant for production volumes.
package memstore

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/concordtm/concord/internal/store"
)

// defaultLimit is what List returns at most when ListOptions.Limit <= 0.
const defaultLimit = 100

// unfinishedPage is how many records Unfinished copies per lock hold; fn is
// called without the lock, so it may call back into the Store.
const unfinishedPage = 256

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	records map[string]store.Record    // by gid; Data owned by the Store
	live    map[string]struct{}        // gids with Finished == false
	leases  map[string]time.Time       // instance -> end of its liveness
	meta    map[string]store.MetaEntry // by key; Value owned by the Store
	now     func() time.Time           // the store's clock
	closed  bool
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Deleter = (*Store)(nil)
	_ store.Leaser  = (*Store)(nil)
	_ store.Meta    = (*Store)(nil)
)

// New returns an empty Store whose clock is time.Now (monotonic).
func New() *Store {
	return &Store{
		records: make(map[string]store.Record),
		live:    make(map[string]struct{}),
		leases:  make(map[string]time.Time),
		meta:    make(map[string]store.MetaEntry),
		now:     time.Now,
	}
}

// SetClock makes now the Store's clock for Heartbeat and Claim. Leases
// already granted keep their end time.
func (s *Store) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// clone returns r with its own copy of Data.
func clone(r store.Record) store.Record {
	r.Data = slices.Clone(r.Data)
	r.Fresh = false // a write hint, never stored
	return r
}

// Commit stores every record of batch at once.
func (s *Store) Commit(ctx context.Context, batch []store.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	copies := make([]store.Record, len(batch))
	for i, r := range batch {
		copies[i] = clone(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	var conflicts []string
	for _, r := range copies {
		old, ok := s.records[r.GID]
		if !versionMatches(r.Version, old.Version, ok) {
			conflicts = append(conflicts, r.GID)
		}
	}
	if conflicts != nil {
		return &store.ConflictError{GIDs: conflicts}
	}
	for _, r := range copies {
		s.records[r.GID] = r
		if r.Finished {
			delete(s.live, r.GID)
		} else {
			s.live[r.GID] = struct{}{}
		}
	}
	return nil
}

// versionMatches reports whether a write of version want may replace the
// stored version (exists says whether a record is stored at all).
func versionMatches(want, stored int64, exists bool) bool {
	switch {
	case want == 0:
		return true
	case want == 1:
		return !exists
	default:
		return exists && stored == want-1
	}
}

// Get returns a copy of the record for gid.
func (s *Store) Get(ctx context.Context, gid string) (store.Record, error) {
	if err := ctx.Err(); err != nil {
		return store.Record{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Record{}, store.ErrClosed
	}
	r, ok := s.records[gid]
	if !ok {
		return store.Record{}, &notFoundError{gid: gid}
	}
	return clone(r), nil
}

// notFoundError names the missing gid and wraps store.ErrNotFound.
type notFoundError struct{ gid string }

func (e *notFoundError) Error() string {
	return "memstore: gid " + e.gid + ": " + store.ErrNotFound.Error()
}
func (e *notFoundError) Unwrap() error { return store.ErrNotFound }

// List returns copies of the matching records, newest first.
func (s *Store) List(ctx context.Context, opts store.ListOptions) ([]store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var matched []store.Record
	for _, r := range s.records {
		if matches(r, opts) {
			matched = append(matched, r)
		}
	}
	slices.SortFunc(matched, func(a, b store.Record) int {
		if c := cmp.Compare(b.CreatedAt, a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.GID, a.GID)
	})
	matched = matched[:min(limit, len(matched))]
	for i, r := range matched {
		matched[i] = clone(r)
	}
	return matched, nil
}

// matches reports whether r passes the filters and cursor of opts.
func matches(r store.Record, opts store.ListOptions) bool {
	if opts.Status != "" && r.Status != opts.Status ||
		opts.Mode != "" && r.Mode != opts.Mode ||
		!strings.HasPrefix(r.GID, opts.GIDPrefix) {
		return false
	}
	if opts.Before == 0 || r.CreatedAt < opts.Before {
		return true
	}
	return r.CreatedAt == opts.Before && opts.BeforeGID != "" && r.GID < opts.BeforeGID
}

// Unfinished calls fn with a copy of every unfinished record. Records are
// read a page at a time and fn runs without any lock held, so fn may call
// Commit; a record committed during the iteration may or may not be seen.
func (s *Store) Unfinished(ctx context.Context, fn func(store.Record) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	gids := make([]string, 0, len(s.live))
	for gid := range s.live {
		gids = append(gids, gid)
	}
	s.mu.RUnlock()
	slices.Sort(gids)

	for len(gids) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		page := gids[:min(unfinishedPage, len(gids))]
		gids = gids[len(page):]
		recs := make([]store.Record, 0, len(page))
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return store.ErrClosed
		}
		for _, gid := range page {
			if r, ok := s.records[gid]; ok && !r.Finished {
				recs = append(recs, clone(r))
			}
		}
		s.mu.RUnlock()
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteFinished deletes up to limit finished records last updated before
// updatedBefore, oldest update first. A limit <= 0 deletes nothing.
func (s *Store) DeleteFinished(ctx context.Context, updatedBefore int64, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	if limit <= 0 {
		return 0, nil
	}
	var old []store.Record
	for _, r := range s.records {
		if r.Finished && r.UpdatedAt < updatedBefore {
			old = append(old, r)
		}
	}
	slices.SortFunc(old, func(a, b store.Record) int {
		if c := cmp.Compare(a.UpdatedAt, b.UpdatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.GID, b.GID)
	})
	old = old[:min(limit, len(old))]
	for _, r := range old {
		delete(s.records, r.GID)
	}
	return len(old), nil
}

// Close makes every later call fail with store.ErrClosed and drops the
// records.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.closed = true
	s.records, s.live, s.leases = nil, nil, nil
	return nil
}
