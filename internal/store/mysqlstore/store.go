package mysqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"

	"github.com/concordtm/concord/internal/store"
)

// defaultLimit is what List returns at most when ListOptions.Limit <= 0.
const defaultLimit = 100

// unfinishedPage is how many records Unfinished reads per query.
const unfinishedPage = 256

// Limits of one multi-row INSERT: rows, and bytes of Data (well under the
// default max_allowed_packet of 16 MiB, even with escaping).
const (
	maxRowsPerInsert  = 200
	maxBytesPerInsert = 4 << 20
)

// Options configures a Store.
type Options struct {
	// TablePrefix is put before every table name ("records", "leases",
	// "schema"), so several stores can share a database.
	TablePrefix string
}

// Store is the MySQL/MariaDB store. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	owned  bool
	opts   Options
	t      tables
	closed atomic.Bool
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Deleter  = (*Store)(nil)
	_ store.Leaser   = (*Store)(nil)
	_ store.Migrator = (*Store)(nil)
)

// tables are the quoted table names.
type tables struct{ records, leases, schema, meta string }

// Open connects to the database at dsn, a go-sql-driver/mysql DSN such as
// "user:pass@tcp(host:3306)/db", and checks that it answers. It turns on
// client-side parameter interpolation (one round trip per statement). It
// does not create the tables: call Migrate. An unreachable server gives an
// error wrapping store.ErrUnavailable.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: bad DSN: %w", err)
	}
	cfg.InterpolateParams = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: %w", err)
	}
	db := sql.OpenDB(conn)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysqlstore: MySQL at %s is unreachable: %w: %w", cfg.Addr, store.ErrUnavailable, err)
	}
	s := New(db, opts)
	s.owned = true
	return s, nil
}

// New returns a Store on db, which the caller keeps and closes after the
// Store. The DSN should set interpolateParams=true.
func New(db *sql.DB, opts Options) *Store {
	q := func(name string) string { return "`" + strings.ReplaceAll(opts.TablePrefix+name, "`", "``") + "`" }
	return &Store{db: db, opts: opts, t: tables{q("records"), q("leases"), q("schema"), q("meta")}}
}

// columns are the record columns every read selects, in scan's order.
const columns = "gid, mode, status, finished, created_at, updated_at, owner, version, data"

type scanner interface{ Scan(dest ...any) error }

func scan(row scanner) (store.Record, error) {
	var r store.Record
	err := row.Scan(&r.GID, &r.Mode, &r.Status, &r.Finished, &r.CreatedAt, &r.UpdatedAt, &r.Owner, &r.Version, &r.Data)
	if r.Data == nil {
		r.Data = []byte{}
	}
	return r, err
}

// collect reads every row of rows.
func collect(rows *sql.Rows, err error) ([]store.Record, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// fail wraps err from operation op in what the caller may do about it.
func (s *Store) fail(op string, err error) error {
	if s.closed.Load() || errors.Is(err, sql.ErrConnDone) && s.closed.Load() {
		return fmt.Errorf("mysqlstore: %s: %w", op, store.ErrClosed)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("mysqlstore: %s: %w", op, err)
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) || errors.Is(err, driver.ErrBadConn) {
		return fmt.Errorf("mysqlstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	switch me.Number {
	case 1146: // ER_NO_SUCH_TABLE
		return fmt.Errorf("mysqlstore: %s: %w (the schema is missing: run Migrate)", op, err)
	case 1205, 1213, 1040, 1053, 2006, 2013: // lock wait timeout, deadlock, too many connections, shutdown, gone away
		return fmt.Errorf("mysqlstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("mysqlstore: %s: %w", op, err)
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// Commit writes batch in one transaction; see the package documentation.
func (s *Store) Commit(ctx context.Context, batch []store.Record) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := s.commitOnce(ctx, batch)
		var me *mysql.MySQLError
		if attempt < deadlockRetries && errors.As(err, &me) && me.Number == 1213 && ctx.Err() == nil {
			continue // InnoDB rolled the whole transaction back: nothing of it was written
		}
		if err != nil {
			var ce *store.ConflictError
			if errors.As(err, &ce) {
				return err
			}
			return s.fail("commit", err)
		}
		return nil
	}
}

// deadlockRetries bounds Commit's attempts when InnoDB picks its
// transaction as a deadlock victim.
const deadlockRetries = 3

// commitOnce runs one attempt of Commit. It reads at READ COMMITTED: its
// locking read then locks only the rows that exist. At REPEATABLE READ
// (InnoDB's default) the read of gids about to be inserted also locks the
// gap where they would go, two instances inserting new gids (which sort
// after the existing ones, in one gap) each wait for the other's gap lock,
// and InnoDB kills one as a deadlock. An insert that races another is
// still caught, by the duplicate key.
func (s *Store) commitOnce(ctx context.Context, batch []store.Record) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	conflicts, err := s.write(ctx, tx, batch)
	if err != nil || conflicts != nil {
		_ = tx.Rollback() // nothing was committed; a failed rollback drops the connection
		if err != nil {
			return err
		}
		return &store.ConflictError{GIDs: conflicts}
	}
	return tx.Commit()
}

// write runs Commit's statements in tx and returns the conflicting gids.
func (s *Store) write(ctx context.Context, tx *sql.Tx, batch []store.Record) ([]string, error) {
	var versioned []any
	var inserts, upserts []store.Record
	for _, r := range batch {
		if r.Version != 0 {
			versioned = append(versioned, r.GID)
		}
		if r.Version == 1 {
			inserts = append(inserts, r)
		} else {
			upserts = append(upserts, r)
		}
	}
	if versioned != nil {
		stored := make(map[string]int64, len(versioned))
		rows, err := tx.QueryContext(ctx, "SELECT gid, version FROM "+s.t.records+
			" WHERE gid IN ("+placeholders(len(versioned))+") FOR UPDATE", versioned...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var gid string
			var v int64
			if err := rows.Scan(&gid, &v); err != nil {
				rows.Close()
				return nil, err
			}
			stored[gid] = v
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
		var conflicts []string
		for _, r := range batch {
			v, ok := stored[r.GID]
			if r.Version == 1 && ok || r.Version > 1 && (!ok || v != r.Version-1) {
				conflicts = append(conflicts, r.GID)
			}
		}
		if conflicts != nil {
			return conflicts, nil
		}
	}
	if err := s.insert(ctx, tx, inserts, ""); err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == 1062 { // ER_DUP_ENTRY: a concurrent insert won
			gids := make([]string, len(inserts))
			for i, r := range inserts {
				gids[i] = r.GID
			}
			return gids, nil
		}
		return nil, err
	}
	return nil, s.insert(ctx, tx, upserts, " ON DUPLICATE KEY UPDATE mode = VALUES(mode), status = VALUES(status),"+
		" finished = VALUES(finished), created_at = VALUES(created_at), updated_at = VALUES(updated_at),"+
		" owner = VALUES(owner), version = VALUES(version), data = VALUES(data)")
}

// insert writes recs with multi-row INSERT statements ending in suffix.
func (s *Store) insert(ctx context.Context, tx *sql.Tx, recs []store.Record, suffix string) error {
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && n < maxRowsPerInsert && (n == 0 || size+len(recs[n].Data) <= maxBytesPerInsert) {
			size += len(recs[n].Data)
			n++
		}
		args := make([]any, 0, 9*n)
		for _, r := range recs[:n] {
			data := r.Data
			if data == nil {
				data = []byte{}
			}
			args = append(args, r.GID, r.Mode, r.Status, r.Finished, r.CreatedAt, r.UpdatedAt, r.Owner, r.Version, data)
		}
		values := strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?), ", n), ", ")
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+s.t.records+" ("+columns+") VALUES "+values+suffix, args...); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

// Get returns the record for gid.
func (s *Store) Get(ctx context.Context, gid string) (store.Record, error) {
	if err := s.check(ctx); err != nil {
		return store.Record{}, err
	}
	r, err := scan(s.db.QueryRowContext(ctx, "SELECT "+columns+" FROM "+s.t.records+" WHERE gid = ?", gid))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("mysqlstore: gid %q: %w", gid, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, s.fail("get", err)
	}
	return r, nil
}

// List runs one SELECT ordered by (created_at, gid) descending.
func (s *Store) List(ctx context.Context, opts store.ListOptions) ([]store.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	var where []string
	var args []any
	if opts.Status != "" {
		where, args = append(where, "status = ?"), append(args, opts.Status)
	}
	if opts.Mode != "" {
		where, args = append(where, "mode = ?"), append(args, opts.Mode)
	}
	if opts.GIDPrefix != "" {
		where, args = append(where, "gid >= ?"), append(args, []byte(opts.GIDPrefix))
		if hi := successor([]byte(opts.GIDPrefix)); hi != nil {
			where, args = append(where, "gid < ?"), append(args, hi)
		}
	}
	if opts.Before != 0 {
		if opts.BeforeGID != "" {
			where = append(where, "(created_at < ? OR created_at = ? AND gid < ?)")
			args = append(args, opts.Before, opts.Before, []byte(opts.BeforeGID))
		} else {
			where, args = append(where, "created_at < ?"), append(args, opts.Before)
		}
	}
	q := "SELECT " + columns + " FROM " + s.t.records
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, gid DESC LIMIT ?"
	out, err := collect(s.db.QueryContext(ctx, q, append(args, limit)...))
	if err != nil {
		return nil, s.fail("list", err)
	}
	return out, nil
}

// successor returns the smallest byte string greater than every string
// with prefix p, or nil when there is none.
func successor(p []byte) []byte {
	s := bytes.Clone(p)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}

// Unfinished pages through the (finished, gid) index.
func (s *Store) Unfinished(ctx context.Context, fn func(store.Record) error) error {
	after := []byte{}
	for {
		if err := s.check(ctx); err != nil {
			return err
		}
		page, err := collect(s.db.QueryContext(ctx, "SELECT "+columns+" FROM "+s.t.records+
			" WHERE finished = FALSE AND gid > ? ORDER BY gid LIMIT ?", after, unfinishedPage))
		if err != nil {
			return s.fail("unfinished", err)
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < unfinishedPage {
			return nil
		}
		after = []byte(page[len(page)-1].GID)
	}
}

// DeleteFinished deletes up to limit finished records last updated before
// updatedBefore, oldest update first, in one statement.
func (s *Store) DeleteFinished(ctx context.Context, updatedBefore int64, limit int) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	res, err := s.db.ExecContext(ctx, "DELETE FROM "+s.t.records+
		" WHERE finished = TRUE AND updated_at < ? ORDER BY updated_at, gid LIMIT ?", updatedBefore, limit)
	if err != nil {
		return 0, s.fail("delete finished", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.fail("delete finished", err)
	}
	return int(n), nil
}

// Close closes the pool if Open made it. Later calls fail with
// store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return store.ErrClosed
	}
	if s.owned {
		return s.db.Close()
	}
	return nil
}
