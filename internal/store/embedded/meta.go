package embedded

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/concordtm/concord/internal/store"
)

// kindEntry keys hold store.Meta entries: 'k' key -> uvarint(version)
// value. They share no prefix with the record keys, so stores written
// before metadata existed need no migration.
const kindEntry = 'k'

var _ store.Meta = (*Store)(nil)

func entryKey(key string) []byte {
	return append([]byte{kindEntry}, key...)
}

func encodeEntry(version int64, value []byte) []byte {
	return append(binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(value)), uint64(version)), value...)
}

func decodeEntry(key string, v []byte) (store.MetaEntry, error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || n == 0 || n > 1<<62 {
		return store.MetaEntry{}, corrupt("metadata entry", v)
	}
	return store.MetaEntry{Key: key, Version: int64(n), Value: slices.Clone(v[w:])}, nil
}

// storedVersion is the version of key, 0 when absent.
func storedVersion(r reader, key string) (int64, error) {
	v, err := r.get(entryKey(key))
	if err != nil || v == nil {
		return 0, err
	}
	e, err := decodeEntry(key, v)
	return e.Version, err
}

// GetMeta returns the entry for key.
func (s *Store) GetMeta(ctx context.Context, key string) (store.MetaEntry, error) {
	if err := ctx.Err(); err != nil {
		return store.MetaEntry{}, err
	}
	var e store.MetaEntry
	err := s.read(func(r reader) error {
		v, err := r.get(entryKey(key))
		if err != nil {
			return err
		}
		if v == nil {
			return fmt.Errorf("%w: metadata %q", store.ErrNotFound, key)
		}
		e, err = decodeEntry(key, v)
		return err
	})
	return e, err
}

// PutMeta writes key if its stored version is expected, durably.
func (s *Store) PutMeta(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	if err := store.CheckMeta(key, value); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var next int64
	err := s.write(func(r reader, w writer) error {
		stored, err := storedVersion(r, key)
		if err != nil {
			return err
		}
		if next, err = store.MetaNextVersion(key, expected, stored); err != nil {
			return err
		}
		return w.set(entryKey(key), encodeEntry(next, value))
	})
	if err != nil {
		return 0, err
	}
	return next, nil
}

// DeleteMeta removes key if its stored version is expected, durably.
func (s *Store) DeleteMeta(ctx context.Context, key string, expected int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.write(func(r reader, w writer) error {
		stored, err := storedVersion(r, key)
		if err != nil {
			return err
		}
		if stored == 0 {
			return fmt.Errorf("%w: metadata %q", store.ErrNotFound, key)
		}
		if expected != store.MetaAny && expected != stored {
			return store.MetaConflict(key, expected, stored)
		}
		return w.del(entryKey(key))
	})
}

// ListMeta returns the entries whose key starts with prefix, by key.
func (s *Store) ListMeta(ctx context.Context, prefix string) ([]store.MetaEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lo := entryKey(prefix)
	var out []store.MetaEntry
	err := s.read(func(r reader) error {
		out = out[:0]
		return r.scan(lo, store.PrefixEnd(lo), false, func(k, v []byte) (bool, error) {
			e, err := decodeEntry(string(k[1:]), v)
			if err != nil {
				return false, err
			}
			out = append(out, e)
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
