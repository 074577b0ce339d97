package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/concordtm/concord/internal/store"
)

var _ store.Meta = (*Store)(nil)

// GetMeta returns the entry for key.
func (s *Store) GetMeta(ctx context.Context, key string) (store.MetaEntry, error) {
	if err := s.check(ctx); err != nil {
		return store.MetaEntry{}, err
	}
	e := store.MetaEntry{Key: key}
	err := s.pool.QueryRow(ctx, "SELECT version, value FROM "+s.q.meta+" WHERE key = $1", []byte(key)).Scan(&e.Version, &e.Value)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.MetaEntry{}, fmt.Errorf("pgstore: metadata %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.MetaEntry{}, s.fail("get metadata", err)
	}
	return e, nil
}

// PutMeta is one statement: an INSERT .. ON CONFLICT DO NOTHING when the
// key must be absent, an UPDATE .. WHERE version = expected when it must be
// at a version, an upsert otherwise.
func (s *Store) PutMeta(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	if err := store.CheckMeta(key, value); err != nil {
		return 0, err
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if value == nil {
		value = []byte{} // NOT NULL
	}
	var q string
	args := []any{[]byte(key), value}
	switch {
	case expected == store.MetaAny:
		q = "INSERT INTO " + s.q.meta + " AS m (key, version, value) VALUES ($1, 1, $2)" +
			" ON CONFLICT (key) DO UPDATE SET version = m.version + 1, value = excluded.value RETURNING version"
	case expected == 0:
		q = "INSERT INTO " + s.q.meta + " (key, version, value) VALUES ($1, 1, $2) ON CONFLICT (key) DO NOTHING RETURNING version"
	case expected > 0:
		q = "UPDATE " + s.q.meta + " SET version = version + 1, value = $2 WHERE key = $1 AND version = $3 RETURNING version"
		args = append(args, expected)
	default:
		return 0, fmt.Errorf("%w: expected version %d", store.ErrInvalidMeta, expected)
	}
	var v int64
	err := s.pool.QueryRow(ctx, q, args...).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, s.metaConflict(ctx, key, expected)
	}
	if err != nil {
		return 0, s.fail("put metadata", err)
	}
	return v, nil
}

// metaConflict reads the stored version for the error message.
func (s *Store) metaConflict(ctx context.Context, key string, expected int64) error {
	var stored int64
	err := s.pool.QueryRow(ctx, "SELECT version FROM "+s.q.meta+" WHERE key = $1", []byte(key)).Scan(&stored)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: metadata %q: expected version %d, not stored", store.ErrConflict, key, expected)
	}
	return store.MetaConflict(key, expected, stored)
}

// DeleteMeta is one DELETE .. RETURNING; when it deletes nothing, a second
// read tells an absent key from a version mismatch.
func (s *Store) DeleteMeta(ctx context.Context, key string, expected int64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	q := "DELETE FROM " + s.q.meta + " WHERE key = $1 AND ($2::BIGINT < 0 OR version = $2) RETURNING version"
	var v int64
	err := s.pool.QueryRow(ctx, q, []byte(key), expected).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		var stored int64
		err = s.pool.QueryRow(ctx, "SELECT version FROM "+s.q.meta+" WHERE key = $1", []byte(key)).Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: metadata %q: %w", key, store.ErrNotFound)
		}
		if err != nil {
			return s.fail("delete metadata", err)
		}
		return store.MetaConflict(key, expected, stored)
	}
	if err != nil {
		return s.fail("delete metadata", err)
	}
	return nil
}

// ListMeta is a range scan of the primary key (keys are BYTEA, so they sort
// bytewise and any prefix is a range).
func (s *Store) ListMeta(ctx context.Context, prefix string) ([]store.MetaEntry, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	q := "SELECT key, version, value FROM " + s.q.meta + " WHERE key >= $1"
	args := []any{[]byte(prefix)}
	if hi := store.PrefixEnd([]byte(prefix)); hi != nil {
		q += " AND key < $2"
		args = append(args, hi)
	}
	rows, err := s.pool.Query(ctx, q+" ORDER BY key", args...)
	if err != nil {
		return nil, s.fail("list metadata", err)
	}
	defer rows.Close()
	out, err := store.ScanMeta(rows)
	if err != nil {
		return nil, s.fail("list metadata", err)
	}
	return out, nil
}
