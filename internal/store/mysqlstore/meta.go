package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"

	"github.com/concordtm/concord/internal/store"
)

var _ store.Meta = (*Store)(nil)

// metaAttempts bounds the retries of an unconditional PutMeta that lost a
// race to insert the same key.
const metaAttempts = 5

// GetMeta returns the entry for key.
func (s *Store) GetMeta(ctx context.Context, key string) (store.MetaEntry, error) {
	if err := s.check(ctx); err != nil {
		return store.MetaEntry{}, err
	}
	e := store.MetaEntry{Key: key}
	err := s.db.QueryRowContext(ctx, "SELECT version, value FROM "+s.t.meta+" WHERE mkey = ?", []byte(key)).Scan(&e.Version, &e.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return store.MetaEntry{}, fmt.Errorf("mysqlstore: metadata %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.MetaEntry{}, s.fail("get metadata", err)
	}
	return e, nil
}

// storedMetaVersion is the version of key, 0 when absent.
func (s *Store) storedMetaVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, key string, lock bool) (int64, error) {
	stmt := "SELECT version FROM " + s.t.meta + " WHERE mkey = ?"
	if lock {
		stmt += " FOR UPDATE"
	}
	var v int64
	err := q.QueryRowContext(ctx, stmt, []byte(key)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func isDuplicate(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062 // ER_DUP_ENTRY
}

// PutMeta is an INSERT when the key must be absent (a duplicate key is the
// conflict), an UPDATE .. WHERE version = expected when it must be at a
// version, and otherwise a transaction that locks the row, then inserts or
// updates it (retried when a concurrent insert of the same key won).
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
	switch {
	case expected == 0:
		_, err := s.db.ExecContext(ctx, "INSERT INTO "+s.t.meta+" (mkey, version, value) VALUES (?, 1, ?)", []byte(key), value)
		if isDuplicate(err) {
			return 0, s.metaConflict(ctx, key, expected)
		}
		if err != nil {
			return 0, s.fail("put metadata", err)
		}
		return 1, nil
	case expected > 0:
		res, err := s.db.ExecContext(ctx, "UPDATE "+s.t.meta+" SET version = version + 1, value = ? WHERE mkey = ? AND version = ?",
			value, []byte(key), expected)
		if err != nil {
			return 0, s.fail("put metadata", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, s.fail("put metadata", err)
		} else if n == 0 {
			return 0, s.metaConflict(ctx, key, expected)
		}
		return expected + 1, nil
	case expected != store.MetaAny:
		return 0, fmt.Errorf("%w: expected version %d", store.ErrInvalidMeta, expected)
	}
	var err error
	for range metaAttempts {
		var v int64
		if v, err = s.upsertMeta(ctx, key, value); err == nil {
			return v, nil
		}
		if !isDuplicate(err) {
			break
		}
	}
	return 0, s.fail("put metadata", err)
}

func (s *Store) upsertMeta(ctx context.Context, key string, value []byte) (int64, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	stored, err := s.storedMetaVersion(ctx, tx, key, true)
	if err != nil {
		return 0, err
	}
	if stored == 0 {
		_, err = tx.ExecContext(ctx, "INSERT INTO "+s.t.meta+" (mkey, version, value) VALUES (?, 1, ?)", []byte(key), value)
	} else {
		_, err = tx.ExecContext(ctx, "UPDATE "+s.t.meta+" SET version = ?, value = ? WHERE mkey = ?", stored+1, value, []byte(key))
	}
	if err != nil {
		return 0, err
	}
	return stored + 1, tx.Commit()
}

// metaConflict reads the stored version for the error message.
func (s *Store) metaConflict(ctx context.Context, key string, expected int64) error {
	stored, err := s.storedMetaVersion(ctx, s.db, key, false)
	if err != nil {
		return fmt.Errorf("%w: metadata %q: expected version %d, not stored", store.ErrConflict, key, expected)
	}
	return store.MetaConflict(key, expected, stored)
}

// DeleteMeta is one DELETE; when it deletes nothing, a second read tells an
// absent key from a version mismatch.
func (s *Store) DeleteMeta(ctx context.Context, key string, expected int64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, "DELETE FROM "+s.t.meta+" WHERE mkey = ? AND (? < 0 OR version = ?)", []byte(key), expected, expected)
	if err != nil {
		return s.fail("delete metadata", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.fail("delete metadata", err)
	}
	if n > 0 {
		return nil
	}
	stored, err := s.storedMetaVersion(ctx, s.db, key, false)
	switch {
	case err != nil:
		return s.fail("delete metadata", err)
	case stored == 0:
		return fmt.Errorf("mysqlstore: metadata %q: %w", key, store.ErrNotFound)
	}
	return store.MetaConflict(key, expected, stored)
}

// ListMeta is a range scan of the primary key (VARBINARY compares
// bytewise, so any prefix is a range).
func (s *Store) ListMeta(ctx context.Context, prefix string) ([]store.MetaEntry, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	q := "SELECT mkey, version, value FROM " + s.t.meta + " WHERE mkey >= ?"
	args := []any{[]byte(prefix)}
	if hi := store.PrefixEnd([]byte(prefix)); hi != nil {
		q += " AND mkey < ?"
		args = append(args, hi)
	}
	rows, err := s.db.QueryContext(ctx, q+" ORDER BY mkey", args...)
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
