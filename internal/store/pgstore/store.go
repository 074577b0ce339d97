package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concordtm/concord/internal/store"
)

// defaultLimit is what List returns at most when ListOptions.Limit <= 0.
const defaultLimit = 100

// unfinishedPage is how many records Unfinished reads per query; fn is
// called between queries, with no connection held.
const unfinishedPage = 256

// Options configures a Store.
type Options struct {
	// Schema holds the tables; empty means the first schema of the
	// connection's search_path. Migrate creates it if needed.
	Schema string
	// TablePrefix is put before every table name ("records", "leases",
	// "schema"), so several stores can share a schema.
	TablePrefix string
}

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	owned  bool // Close closes pool
	opts   Options
	q      queries
	closed atomic.Bool
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Deleter  = (*Store)(nil)
	_ store.Leaser   = (*Store)(nil)
	_ store.Migrator = (*Store)(nil)
)

// Open connects to the database at dsn (a pgx URL or keyword/value DSN)
// and checks that it answers. It does not create the tables: call Migrate.
// An unreachable server gives an error wrapping store.ErrUnavailable.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: bad DSN: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: PostgreSQL at %s:%d is unreachable: %w: %w",
			cfg.ConnConfig.Host, cfg.ConnConfig.Port, store.ErrUnavailable, err)
	}
	s := New(pool, opts)
	s.owned = true
	return s, nil
}

// New returns a Store on pool, which the caller keeps and closes after
// the Store.
func New(pool *pgxpool.Pool, opts Options) *Store {
	return &Store{pool: pool, opts: opts, q: newQueries(opts)}
}

// columns are the record columns every read selects, in scanRecord's order.
const columns = "gid, mode, status, finished, created_at, updated_at, owner, version, data"

// scanRecord reads one row of columns.
func scanRecord(row pgx.Row) (store.Record, error) {
	var r store.Record
	err := row.Scan(&r.GID, &r.Mode, &r.Status, &r.Finished, &r.CreatedAt, &r.UpdatedAt, &r.Owner, &r.Version, &r.Data)
	return r, err
}

// queries holds the SQL of a Store, with its table names filled in.
type queries struct {
	records, leases, schema string // quoted, qualified table names
	meta                    string // store.Meta entries
	upsert, insert, update  string
	get, unfinished, delete string
	heartbeat, release      string
	lock, claim             string
}

func newQueries(o Options) queries {
	q := queries{
		records: table(o, "records"),
		leases:  table(o, "leases"),
		schema:  table(o, "schema"),
		meta:    table(o, "meta"),
	}
	const set = "mode = $2, status = $3, finished = $4, created_at = $5, updated_at = $6, owner = $7, version = $8, data = $9"
	ins := "INSERT INTO " + q.records + " (" + columns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
	q.upsert = ins + " ON CONFLICT (gid) DO UPDATE SET mode = excluded.mode, status = excluded.status," +
		" finished = excluded.finished, created_at = excluded.created_at, updated_at = excluded.updated_at," +
		" owner = excluded.owner, version = excluded.version, data = excluded.data"
	q.insert = ins + " ON CONFLICT (gid) DO NOTHING"
	q.update = "UPDATE " + q.records + " SET " + set + " WHERE gid = $1 AND version = $8 - 1"
	q.get = "SELECT " + columns + " FROM " + q.records + " WHERE gid = $1"
	q.unfinished = "SELECT " + columns + " FROM " + q.records +
		" WHERE NOT finished AND gid > $1 ORDER BY gid LIMIT " + fmt.Sprint(unfinishedPage)
	q.delete = "DELETE FROM " + q.records + " WHERE finished AND updated_at < $1 AND gid IN (SELECT gid FROM " +
		q.records + " WHERE finished AND updated_at < $1 ORDER BY updated_at, gid LIMIT $2)"
	q.heartbeat = "INSERT INTO " + q.leases + " (instance, expires_at) VALUES ($1, now() + $2::BIGINT * INTERVAL '1 microsecond')" +
		" ON CONFLICT (instance) DO UPDATE SET expires_at = excluded.expires_at"
	q.release = "DELETE FROM " + q.leases + " WHERE instance = $1"
	// Claim is two statements in one transaction. The first locks
	// candidates, skipping rows another claim holds. Under READ COMMITTED
	// a row that a concurrent claim updated and committed is locked in its
	// new version and rechecked only against its own columns, not against
	// the leases anti-join, so the candidates may include records just
	// claimed by a live instance. The second statement runs with a new
	// snapshot while the locks are held and takes only the rows that still
	// qualify.
	dead := " NOT finished AND owner <> $1 AND NOT EXISTS (SELECT 1 FROM " + q.leases +
		" l WHERE l.instance = owner AND l.expires_at > now())"
	q.lock = "SELECT gid FROM " + q.records + " WHERE" + dead + " ORDER BY gid LIMIT $2 FOR UPDATE SKIP LOCKED"
	q.claim = "UPDATE " + q.records + " SET owner = $1, version = version + 1 WHERE gid = ANY($2) AND" + dead +
		" RETURNING " + columns
	return q
}

// table returns the quoted, schema-qualified name of a table.
func table(o Options, name string) string {
	id := pgx.Identifier{o.TablePrefix + name}
	if o.Schema != "" {
		id = pgx.Identifier{o.Schema, o.TablePrefix + name}
	}
	return id.Sanitize()
}

// check fails when the store is closed or ctx is done.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// fail wraps err from operation op in what the caller may do about it.
func (s *Store) fail(op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("pgstore: %s: %w", op, store.ErrClosed)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pgstore: %s: %w", op, err)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		// Not an answer from the server: the connection failed.
		return fmt.Errorf("pgstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	switch {
	case pe.Code == "42P01" || pe.Code == "3F000": // undefined_table, invalid_schema_name
		return fmt.Errorf("pgstore: %s: %w (the schema is missing: run Migrate)", op, err)
	case strings.HasPrefix(pe.Code, "08"), // connection exception
		strings.HasPrefix(pe.Code, "40"), // transaction rollback: serialization, deadlock
		strings.HasPrefix(pe.Code, "53"), // insufficient resources
		strings.HasPrefix(pe.Code, "57"): // operator intervention: shutdown, cancel
		return fmt.Errorf("pgstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// Commit writes batch in one transaction, pipelined in one round trip
// before COMMIT. See the package documentation for the statements.
func (s *Store) Commit(ctx context.Context, batch []store.Record) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	for _, r := range batch {
		sql := s.q.upsert
		switch {
		case r.Version == 1:
			sql = s.q.insert
		case r.Version > 1:
			sql = s.q.update
		}
		data := r.Data
		if data == nil {
			data = []byte{}
		}
		b.Queue(sql, r.GID, r.Mode, r.Status, r.Finished, r.CreatedAt, r.UpdatedAt, r.Owner, r.Version, data)
	}
	br := s.pool.SendBatch(ctx, b)
	conflicts, err := commitResults(br, batch)
	tx := br.Tx()
	if err == nil && tx == nil {
		err = errors.New("no transaction")
	}
	if err != nil || conflicts != nil {
		if tx != nil {
			// The transaction never committed; a failed rollback only
			// loses the connection.
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		if err != nil {
			return s.fail("commit", err)
		}
		return &store.ConflictError{GIDs: conflicts}
	}
	if err := tx.Commit(ctx); err != nil {
		return s.fail("commit", err)
	}
	return nil
}

// commitResults reads the results of Commit's batch: BEGIN, then one per
// record. It returns the gids of versioned records that matched no row.
func commitResults(br pgx.BatchResults, batch []store.Record) (conflicts []string, err error) {
	defer func() { err = errors.Join(err, br.Close()) }()
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	for _, r := range batch {
		tag, err := br.Exec()
		if err != nil {
			return nil, err
		}
		if r.Version != 0 && tag.RowsAffected() == 0 {
			conflicts = append(conflicts, r.GID)
		}
	}
	return conflicts, nil
}

// Get returns the record for gid.
func (s *Store) Get(ctx context.Context, gid string) (store.Record, error) {
	if err := s.check(ctx); err != nil {
		return store.Record{}, err
	}
	r, err := scanRecord(s.pool.QueryRow(ctx, s.q.get, gid))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, fmt.Errorf("pgstore: gid %q: %w", gid, store.ErrNotFound)
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
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if opts.Status != "" {
		where = append(where, "status = "+arg(opts.Status))
	}
	if opts.Mode != "" {
		where = append(where, "mode = "+arg(opts.Mode))
	}
	if opts.GIDPrefix != "" {
		where = append(where, "gid >= "+arg(opts.GIDPrefix))
		if hi, ok := prefixEnd(opts.GIDPrefix); ok {
			where = append(where, "gid < "+arg(hi))
		}
	}
	if opts.Before != 0 {
		b := arg(opts.Before)
		if opts.BeforeGID != "" {
			where = append(where, "(created_at < "+b+" OR created_at = "+b+" AND gid < "+arg(opts.BeforeGID)+")")
		} else {
			where = append(where, "created_at < "+b)
		}
	}
	sql := "SELECT " + columns + " FROM " + s.q.records
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY created_at DESC, gid DESC LIMIT " + arg(limit)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.fail("list", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Record, error) { return scanRecord(row) })
	if err != nil {
		return nil, s.fail("list", err)
	}
	return out, nil
}

// prefixEnd returns the smallest valid UTF-8 string greater than every
// string that starts with prefix (the last rune that can be incremented is,
// and what follows it is dropped); ok is false when there is none.
func prefixEnd(prefix string) (string, bool) {
	runes := []rune(prefix)
	for i := len(runes) - 1; i >= 0; i-- {
		r := runes[i] + 1
		if r >= 0xD800 && r < 0xE000 {
			r = 0xE000 // skip the surrogates, which UTF-8 cannot hold
		}
		if r <= utf8.MaxRune {
			runes[i] = r
			return string(runes[:i+1]), true
		}
	}
	return "", false
}

// Unfinished pages through the partial index of unfinished gids.
func (s *Store) Unfinished(ctx context.Context, fn func(store.Record) error) error {
	after := ""
	for {
		if err := s.check(ctx); err != nil {
			return err
		}
		rows, err := s.pool.Query(ctx, s.q.unfinished, after)
		if err != nil {
			return s.fail("unfinished", err)
		}
		page, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Record, error) { return scanRecord(row) })
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
		after = page[len(page)-1].GID
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
	tag, err := s.pool.Exec(ctx, s.q.delete, updatedBefore, limit)
	if err != nil {
		return 0, s.fail("delete finished", err)
	}
	return int(tag.RowsAffected()), nil
}

// Close closes the pool if Open made it. Later calls fail with
// store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return store.ErrClosed
	}
	if s.owned {
		s.pool.Close()
	}
	return nil
}
