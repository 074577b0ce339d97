package embedded

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltFile is the name of the bbolt database file inside the directory.
const boltFile = "concord.bbolt"

// boltBucket holds the whole key space (see keys.go).
var boltBucket = []byte("concord")

// boltEngine keeps the key space in one bbolt bucket. bbolt makes every
// read-write transaction durable with fdatasync before Commit returns.
type boltEngine struct {
	db *bolt.DB
}

func openBolt(dir string) (*boltEngine, error) {
	db, err := bolt.Open(filepath.Join(dir, boltFile), 0o600, &bolt.Options{
		// Another process holding the file lock makes Open fail instead
		// of waiting for ever.
		Timeout:      time.Second,
		NoSync:       false,
		NoGrowSync:   false,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: open bbolt: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("embedded: create bucket: %w", err), db.Close())
	}
	return &boltEngine{db: db}, nil
}

func (e *boltEngine) view(fn func(r reader) error) error {
	return e.db.View(func(tx *bolt.Tx) error {
		return fn(boltBucketRW{tx.Bucket(boltBucket)})
	})
}

func (e *boltEngine) update(fn func(r reader, w writer) error) error {
	return e.db.Update(func(tx *bolt.Tx) error {
		b := boltBucketRW{tx.Bucket(boltBucket)}
		return fn(b, b)
	})
}

// updateAsync cannot split bbolt's commit: it returns after the fsync.
func (e *boltEngine) updateAsync(fn func(r reader, w writer) error) (func() error, error) {
	if err := e.update(fn); err != nil {
		return nil, err
	}
	return noWait, nil
}

func (e *boltEngine) close() error { return e.db.Close() }

// boltBucketRW adapts a bucket to reader and writer.
type boltBucketRW struct {
	b *bolt.Bucket
}

func (b boltBucketRW) get(key []byte) ([]byte, error) { return b.b.Get(key), nil }
func (b boltBucketRW) set(key, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return b.b.Put(key, value)
}
func (b boltBucketRW) del(key []byte) error { return b.b.Delete(key) }

func (b boltBucketRW) scan(lo, hi []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	c := b.b.Cursor()
	var k, v []byte
	if reverse {
		if hi == nil {
			k, v = c.Last()
		} else if k, v = c.Seek(hi); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	} else {
		k, v = c.Seek(lo)
	}
	for ; k != nil; k, v = step(c, reverse) {
		if bytes.Compare(k, lo) < 0 || hi != nil && bytes.Compare(k, hi) >= 0 {
			break
		}
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func step(c *bolt.Cursor, reverse bool) ([]byte, []byte) {
	if reverse {
		return c.Prev()
	}
	return c.Next()
}
