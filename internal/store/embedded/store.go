package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/concordtm/concord/internal/store"
)

// Engine names for Options.Engine.
const (
	EngineBolt   = "bbolt"
	EnginePebble = "pebble"
	// DefaultEngine is used when Options.Engine is empty; docs/storage.md
	// has the measurements it was chosen by.
	DefaultEngine = EnginePebble
)

// defaultLimit is what List returns at most when ListOptions.Limit <= 0.
const defaultLimit = 100

// unfinishedPage is how many records Unfinished reads per snapshot; fn is
// called between snapshots, with nothing held, so it may call Commit.
const unfinishedPage = 256

// Options configures Open.
type Options struct {
	// Engine is EngineBolt or EnginePebble; empty means DefaultEngine. A
	// directory keeps the engine it was created with: opening it with the
	// other one fails instead of starting an empty store.
	Engine string
}

// Validate reports whether o names a known engine.
func (o Options) Validate() error {
	switch o.Engine {
	case "", EngineBolt, EnginePebble:
		return nil
	}
	return fmt.Errorf("embedded: unknown engine %q (want %q or %q)", o.Engine, EngineBolt, EnginePebble)
}

// Store is the embedded store.Store and store.Deleter. It is safe for
// concurrent use.
//
// Versioned writes (Record.Version > 0) are checked against the stored
// record inside the engine's serialised update, so they are fenced like in
// a shared store; the store does not implement store.Leaser, because one
// process holds the directory's lock and there is no one to lease from.
type Store struct {
	eng    engine
	name   string       // engine name
	mu     sync.RWMutex // read-held for every engine call; Close takes it to write
	closed bool         // guarded by mu

	// commitMu serialises Commit (the engines serialise writes anyway) so
	// that live can be kept exactly in step with what is on disk.
	commitMu sync.Mutex
	// live holds the index entries of every unfinished record committed
	// through this Store, so a rewrite (a transaction's next state) can
	// drop its old entries without reading the old record back. A gid
	// missing here is read from the engine. Guarded by commitMu.
	live map[string][]keyValue
}

var (
	_ store.Store          = (*Store)(nil)
	_ store.Deleter        = (*Store)(nil)
	_ store.AsyncCommitter = (*Store)(nil)
)

// Open opens or creates the store in dir, creating dir if needed.
func Open(dir string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	name := opts.Engine
	if name == "" {
		name = DefaultEngine
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	other, otherName := pebbleDir, EnginePebble
	if name == EnginePebble {
		other, otherName = boltFile, EngineBolt
	}
	if _, err := os.Stat(filepath.Join(dir, other)); err == nil {
		return nil, fmt.Errorf("embedded: %s holds a %s store; open it with Engine %q", dir, otherName, otherName)
	}
	var eng engine
	var err error
	if name == EnginePebble {
		eng, err = openPebble(dir)
	} else {
		eng, err = openBolt(dir)
	}
	if err != nil {
		return nil, err
	}
	if err := checkVersion(eng); err != nil {
		return nil, errors.Join(err, eng.close())
	}
	return &Store{eng: eng, name: name}, nil
}

// checkVersion stamps a new store with schemaVersion, upgrades a store of
// version 1 and refuses any other.
func checkVersion(eng engine) error {
	var old bool
	err := eng.update(func(r reader, w writer) error {
		v, err := r.get(versionKey)
		switch {
		case err != nil:
			return err
		case v == nil:
			return w.set(versionKey, []byte{schemaVersion})
		case len(v) == 1 && v[0] == 1:
			old = true
			return nil
		case len(v) != 1 || v[0] != schemaVersion:
			return fmt.Errorf("embedded: schema version %x, want %d: %w", v, schemaVersion, store.ErrCorrupt)
		}
		return nil
	})
	if err != nil || !old {
		return err
	}
	return migrateV1(eng)
}

// migrateBatch is how many records one write of migrateV1 moves.
const migrateBatch = 1000

// migrateV1 moves the records of a version-1 store from 'r' keys to 'z'
// keys (the index keys are the same in both versions), a batch per atomic
// write, and stamps version 2 with the last one. A crash in between leaves
// version 1 with some records moved; the next Open moves the rest. Until
// the stamp, no Store serves the directory.
func migrateV1(eng engine) error {
	lo, hi := []byte{kindRecordV1}, []byte{kindRecordV1 + 1}
	for {
		done := false
		err := eng.update(func(r reader, w writer) error {
			type kv struct{ k, v []byte }
			var batch []kv
			err := r.scan(lo, hi, false, func(k, v []byte) (bool, error) {
				batch = append(batch, kv{bytes.Clone(k), bytes.Clone(v)})
				return len(batch) < migrateBatch, nil
			})
			if err != nil {
				return err
			}
			for _, e := range batch {
				if err := w.set(append([]byte{kindRecord}, e.k[1:]...), e.v); err != nil {
					return err
				}
				if err := w.del(e.k); err != nil {
					return err
				}
			}
			if len(batch) < migrateBatch {
				done = true
				return w.set(versionKey, []byte{schemaVersion})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("embedded: upgrading the store from schema version 1: %w", err)
		}
		if done {
			return nil
		}
	}
}

// Engine returns the name of the engine the store runs on.
func (s *Store) Engine() string { return s.name }

// read runs fn against a snapshot unless the store is closed.
func (s *Store) read(fn func(r reader) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	return s.eng.view(fn)
}

// write runs fn in one durable update unless the store is closed.
func (s *Store) write(fn func(r reader, w writer) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	return s.eng.update(fn)
}

// Commit writes the batch and its index entries in one engine write, fsynced
// before it returns.
func (s *Store) Commit(ctx context.Context, batch []store.Record) error {
	wait, err := s.CommitAsync(ctx, batch)
	if err != nil {
		return err
	}
	return wait()
}

// CommitAsync is Commit split in two (store.AsyncCommitter): it returns
// once the batch is applied, so that later commits and reads see it, and
// hands back a function that waits until the batch is durable. Batches
// become durable in the order they were applied. On the Pebble engine the
// next batch can be applied while this one is fsynced; on bbolt the fsync
// happens before CommitAsync returns. The caller must call wait exactly
// once, and must not tell anyone about the batch before wait returned nil;
// Close waits for every outstanding wait.
func (s *Store) CommitAsync(ctx context.Context, batch []store.Record) (func() error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type prepared struct {
		key, value []byte
		index      []keyValue
	}
	batch = lastPerGID(batch)
	prep := make([]prepared, len(batch))
	for i, r := range batch {
		prep[i] = prepared{recordKey(r.GID), encodeRecord(r), indexKeys(r)}
	}
	// The read lock is held until wait returns, so that Close waits for
	// the fsyncs in flight. It is taken before commitMu: a failed wait
	// takes commitMu while it holds the read lock.
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, store.ErrClosed
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if s.live == nil {
		s.live = make(map[string][]keyValue)
	}
	var conflict *store.ConflictError
	wait, err := s.eng.updateAsync(func(r reader, w writer) error {
		// Versioned records are checked before anything is written; their
		// stored value, read here, also tells which index entries to drop.
		stored, err := checkVersions(r, batch)
		if err != nil {
			if errors.As(err, &conflict) {
				return conflict
			}
			return err
		}
		for i, p := range prep {
			var err error
			if old, ok := s.live[batch[i].GID]; ok {
				err = dropIndex(w, old, p.index)
			} else if old, ok := stored[batch[i].GID]; ok {
				err = dropIndex(w, indexKeys(old), p.index)
			} else if !batch[i].Fresh && batch[i].Version != 1 {
				err = unindex(r, w, batch[i].GID, p.index)
			}
			if err != nil {
				return err
			}
			if err := w.set(p.key, p.value); err != nil {
				return err
			}
			for _, kv := range p.index {
				if err := w.set(kv.key, kv.value); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if conflict != nil {
		s.mu.RUnlock()
		return nil, conflict // nothing was written; the cache still holds
	}
	if err != nil {
		s.mu.RUnlock()
		// Whether any of it reached the engine is not known here; forget
		// the cache and read old entries back from now on.
		clear(s.live)
		return nil, fmt.Errorf("embedded: commit: %w", err)
	}
	for i, r := range batch {
		if r.Finished {
			delete(s.live, r.GID)
		} else {
			s.live[r.GID] = prep[i].index
		}
	}
	return func() error {
		defer s.mu.RUnlock()
		if err := wait(); err != nil {
			// The batch is applied but not known to be durable, and the
			// cache describes it: forget the cache, as above.
			s.commitMu.Lock()
			clear(s.live)
			s.commitMu.Unlock()
			return fmt.Errorf("embedded: commit: %w", err)
		}
		return nil
	}, nil
}

// checkVersions reads the stored record of every versioned record of batch
// and returns them by gid, or a *store.ConflictError naming every record
// whose Version does not follow the stored one. Unversioned records are not
// read: the default single-coordinator path costs no extra read.
func checkVersions(r reader, batch []store.Record) (map[string]store.Record, error) {
	var stored map[string]store.Record
	var conflicts []string
	for _, rec := range batch {
		if rec.Version == 0 {
			continue
		}
		v, err := r.get(recordKey(rec.GID))
		if err != nil {
			return nil, err
		}
		var old store.Record
		if v != nil {
			if old, err = decodeRecord(rec.GID, v, false); err != nil {
				return nil, err
			}
		}
		switch {
		case rec.Version == 1 && v == nil:
		case rec.Version > 1 && v != nil && old.Version == rec.Version-1:
			if stored == nil {
				stored = make(map[string]store.Record)
			}
			stored[rec.GID] = old
		default:
			conflicts = append(conflicts, rec.GID)
		}
	}
	if conflicts != nil {
		return nil, &store.ConflictError{GIDs: conflicts}
	}
	return stored, nil
}

// lastPerGID returns batch with only the last record of each gid. The
// contract forbids duplicates; this keeps the indexes right regardless.
func lastPerGID(batch []store.Record) []store.Record {
	if len(batch) < 2 {
		return batch
	}
	seen := make(map[string]int, len(batch))
	for i, r := range batch {
		seen[r.GID] = i
	}
	if len(seen) == len(batch) {
		return batch
	}
	out := make([]store.Record, 0, len(seen))
	for i, r := range batch {
		if seen[r.GID] == i {
			out = append(out, r)
		}
	}
	return out
}

// unindex deletes the index entries of the stored record for gid, if any,
// except those in keep.
func unindex(r reader, w writer, gid string, keep []keyValue) error {
	old, err := r.get(recordKey(gid))
	if err != nil || old == nil {
		return err
	}
	rec, err := decodeRecord(gid, old, false)
	if err != nil {
		return err
	}
	return dropIndex(w, indexKeys(rec), keep)
}

// dropIndex deletes the entries in old that are not in keep.
func dropIndex(w writer, old, keep []keyValue) error {
	for _, kv := range old {
		if !hasKey(keep, kv.key) {
			if err := w.del(kv.key); err != nil {
				return err
			}
		}
	}
	return nil
}

func hasKey(kvs []keyValue, key []byte) bool {
	for _, kv := range kvs {
		if bytes.Equal(kv.key, key) {
			return true
		}
	}
	return false
}

// Get returns the record for gid.
func (s *Store) Get(ctx context.Context, gid string) (store.Record, error) {
	if err := ctx.Err(); err != nil {
		return store.Record{}, err
	}
	var rec store.Record
	err := s.read(func(r reader) error {
		v, err := r.get(recordKey(gid))
		if err != nil {
			return err
		}
		if v == nil {
			return store.ErrNotFound
		}
		rec, err = decodeRecord(gid, v, true)
		return err
	})
	if err != nil {
		return store.Record{}, fmt.Errorf("embedded: get %q: %w", gid, err)
	}
	return rec, nil
}

// List walks one index backwards from the cursor: the Status index when
// opts.Status is set, else the Mode index when opts.Mode is set, else the
// CreatedAt index. The other filters are checked against the index entry,
// so only matching records are read.
func (s *Store) List(ctx context.Context, opts store.ListOptions) ([]store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	prefix := listPrefix(opts.Status, opts.Mode)
	hi := store.PrefixEnd(prefix)
	if opts.Before != 0 {
		hi = append(appendTS(bytes.Clone(prefix), opts.Before), opts.BeforeGID...)
	}
	var out []store.Record
	err := s.read(func(r reader) error {
		return r.scan(prefix, hi, true, func(k, v []byte) (bool, error) {
			_, gid, err := decodeListKey(k, len(prefix))
			if err != nil {
				return false, err
			}
			if !strings.HasPrefix(gid, opts.GIDPrefix) {
				return true, nil
			}
			status, mode, err := decodeMeta(v)
			if err != nil {
				return false, err
			}
			if opts.Status != "" && status != opts.Status || opts.Mode != "" && mode != opts.Mode {
				return true, nil
			}
			rec, err := readRecord(r, gid)
			if err != nil {
				return false, err
			}
			out = append(out, rec)
			return len(out) < limit, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: list: %w", err)
	}
	return out, nil
}

// readRecord reads a record an index entry points at.
func readRecord(r reader, gid string) (store.Record, error) {
	v, err := r.get(recordKey(gid))
	if err != nil {
		return store.Record{}, err
	}
	if v == nil {
		return store.Record{}, fmt.Errorf("%w: index entry for missing record %q", store.ErrCorrupt, gid)
	}
	return decodeRecord(gid, v, true)
}

// Unfinished reads the unfinished set a page at a time, each page from its
// own snapshot, and calls fn between pages with nothing held.
func (s *Store) Unfinished(ctx context.Context, fn func(store.Record) error) error {
	lo := []byte{kindLive}
	hi := store.PrefixEnd(lo)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		page := make([]store.Record, 0, unfinishedPage)
		err := s.read(func(r reader) error {
			return r.scan(lo, hi, false, func(k, _ []byte) (bool, error) {
				rec, err := readRecord(r, string(k[1:]))
				if err != nil {
					return false, err
				}
				page = append(page, rec)
				lo = append(bytes.Clone(k), 0)
				return len(page) < unfinishedPage, nil
			})
		})
		if err != nil {
			return fmt.Errorf("embedded: unfinished: %w", err)
		}
		for _, rec := range page {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(page) < unfinishedPage {
			return nil
		}
	}
}

// DeleteFinished deletes up to limit finished records last updated before
// updatedBefore, oldest update first, in one durable write. A limit <= 0
// deletes nothing.
func (s *Store) DeleteFinished(ctx context.Context, updatedBefore int64, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deleted := 0
	err := s.write(func(r reader, w writer) error {
		if limit <= 0 {
			return nil
		}
		lo := []byte{kindFinished}
		hi := appendTS([]byte{kindFinished}, updatedBefore)
		var keys [][]byte
		err := r.scan(lo, hi, false, func(k, _ []byte) (bool, error) {
			keys = append(keys, bytes.Clone(k))
			return len(keys) < limit, nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			_, gid, err := decodeListKey(k, 1)
			if err != nil {
				return err
			}
			if err := unindex(r, w, gid, nil); err != nil {
				return err
			}
			// Deleted explicitly too, in case its record is gone.
			if err := w.del(k); err != nil {
				return err
			}
			if err := w.del(recordKey(gid)); err != nil {
				return err
			}
		}
		deleted = len(keys)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("embedded: delete finished: %w", err)
	}
	return deleted, nil
}

// Close closes the engine after in-flight calls return. Later calls fail
// with store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.closed = true
	if err := s.eng.close(); err != nil {
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}
