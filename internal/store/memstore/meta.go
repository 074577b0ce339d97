package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/concordtm/concord/internal/store"
)

// GetMeta returns the entry for key.
func (s *Store) GetMeta(ctx context.Context, key string) (store.MetaEntry, error) {
	if err := ctx.Err(); err != nil {
		return store.MetaEntry{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.MetaEntry{}, store.ErrClosed
	}
	e, ok := s.meta[key]
	if !ok {
		return store.MetaEntry{}, fmt.Errorf("%w: metadata %q", store.ErrNotFound, key)
	}
	e.Value = slices.Clone(e.Value)
	return e, nil
}

// PutMeta writes key if its stored version is expected.
func (s *Store) PutMeta(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	if err := store.CheckMeta(key, value); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	next, err := store.MetaNextVersion(key, expected, s.meta[key].Version)
	if err != nil {
		return 0, err
	}
	s.meta[key] = store.MetaEntry{Key: key, Value: slices.Clone(value), Version: next}
	return next, nil
}

// DeleteMeta removes key if its stored version is expected.
func (s *Store) DeleteMeta(ctx context.Context, key string, expected int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	e, ok := s.meta[key]
	if !ok {
		return fmt.Errorf("%w: metadata %q", store.ErrNotFound, key)
	}
	if expected != store.MetaAny && expected != e.Version {
		return store.MetaConflict(key, expected, e.Version)
	}
	delete(s.meta, key)
	return nil
}

// ListMeta returns the entries whose key starts with prefix, by key.
func (s *Store) ListMeta(ctx context.Context, prefix string) ([]store.MetaEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var out []store.MetaEntry
	for k, e := range s.meta {
		if strings.HasPrefix(k, prefix) {
			e.Value = slices.Clone(e.Value)
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b store.MetaEntry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}
