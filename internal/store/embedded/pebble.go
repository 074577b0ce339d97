package embedded

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
)

// pebbleDir is the name of the Pebble directory inside the directory.
const pebbleDir = "pebble"

// walSyncGap is the least time between two fsyncs of Pebble's log.
const walSyncGap = 250 * time.Microsecond

// pebbleEngine keeps the key space in a Pebble LSM. Every update is one
// batch applied with pebble.Sync: appended to the WAL and fsynced before it
// returns.
type pebbleEngine struct {
	db *pebble.DB
	mu sync.Mutex // serialises update, so its reads see the last update
}

func openPebble(dir string) (*pebbleEngine, error) {
	opts := &pebble.Options{
		Logger:             quietLogger{},
		FormatMajorVersion: pebble.FormatNewest,
		// Pebble fsyncs its log again as soon as the last fsync returns,
		// for whatever was applied meanwhile. On a VM each fsync costs CPU
		// as well as time (the virtio notification is a VM exit: 6 % of
		// all CPU under saga load, in perf). Spacing fsyncs at least
		// walSyncGap apart lets more commits share each one: +4-5 % TCC/s
		// at concurrency 50, sagas at concurrency 10 unchanged within the
		// noise (docs/performance.md). A commit waits at most that much
		// longer, and only when the previous fsync was that recent.
		WALMinSyncInterval: func() time.Duration { return walSyncGap },
	}
	// Bloom filters make a Get of an absent key cheap. Every new gid is
	// looked up before it is created (idempotent submission), so most of
	// those lookups miss: without filters each miss searched every level
	// and cost ~10% of the coordinator's CPU in the TCC benchmark.
	opts.Levels = make([]pebble.LevelOptions, 7)
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].FilterType = pebble.TableFilter
	}
	db, err := pebble.Open(filepath.Join(dir, pebbleDir), opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: open pebble: %w", err)
	}
	return &pebbleEngine{db: db}, nil
}

func (e *pebbleEngine) view(fn func(r reader) error) error {
	snap := e.db.NewSnapshot()
	err := fn(pebbleReader{snap})
	return errors.Join(err, snap.Close())
}

func (e *pebbleEngine) update(fn func(r reader, w writer) error) error {
	wait, err := e.updateAsync(fn)
	if err != nil {
		return err
	}
	return wait()
}

// updateAsync applies the batch with ApplyNoSyncWait: Pebble writes it to
// the WAL and the memtable and publishes it (later reads see it), and its
// log writer fsyncs it with whatever else is pending, after the fsync in
// flight. So the next update is applied while this one's fsync runs, and
// one fsync can cover several updates.
func (e *pebbleEngine) updateAsync(fn func(r reader, w writer) error) (func() error, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.db.NewBatch()
	if err := fn(pebbleReader{e.db}, pebbleWriter{b}); err != nil {
		b.Close()
		return nil, err
	}
	if b.Empty() {
		b.Close()
		return noWait, nil
	}
	if err := e.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		b.Close()
		return nil, err
	}
	return func() error {
		err := b.SyncWait()
		return errors.Join(err, b.Close())
	}, nil
}

func (e *pebbleEngine) close() error { return e.db.Close() }

// pebbleReader reads from a pebble.DB or a pebble.Snapshot.
type pebbleReader struct {
	src pebble.Reader
}

func (r pebbleReader) get(key []byte) ([]byte, error) {
	v, closer, err := r.src.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v = append([]byte{}, v...)
	return v, closer.Close()
}

func (r pebbleReader) scan(lo, hi []byte, reverse bool, fn func(k, v []byte) (bool, error)) (err error) {
	it, err := r.src.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	var ok bool
	if reverse {
		ok = it.Last()
	} else {
		ok = it.First()
	}
	for ; ok; ok = pebbleStep(it, reverse) {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		more, err := fn(it.Key(), v)
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

func pebbleStep(it *pebble.Iterator, reverse bool) bool {
	if reverse {
		return it.Prev()
	}
	return it.Next()
}

type pebbleWriter struct {
	b *pebble.Batch
}

func (w pebbleWriter) set(key, value []byte) error { return w.b.Set(key, value, nil) }
func (w pebbleWriter) del(key []byte) error        { return w.b.Delete(key, nil) }

// quietLogger drops Pebble's informational messages; fatal ones still stop
// the process, as Pebble expects.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
