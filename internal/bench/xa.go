package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/xa"
)

// Default DSNs of the 2pc-xa mode: the loopback services .ci/run starts.
const (
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test"
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

const (
	// xaRows is the number of rows of each side's bench table; every
	// branch increments one of them, picked at random.
	xaRows = 1000
	// xaLockTimeout bounds a branch's wait for a row lock. Two
	// transactions can deadlock across the databases (A holds row r in
	// MariaDB and waits for row s in PostgreSQL, B the other way round),
	// which neither database sees; the timeout fails the prepare (a 500:
	// the coordinator retries it) instead of waiting forever.
	xaLockTimeout = 2 * time.Second
	// xaConnectTimeout bounds the first ping of each database.
	xaConnectTimeout = 10 * time.Second
	// xaSettleTimeout bounds the wait, after the run, for the transactions
	// the end of the run cut off.
	xaSettleTimeout = 30 * time.Second
	// xaCleanupTimeout bounds the statements of the cleanup.
	xaCleanupTimeout = 30 * time.Second
)

// Paths of the two XA participants on the bench's own server.
const (
	xaPathMySQL    = "/xa/mysql"
	xaPathPostgres = "/xa/postgres"
)

// xaCheck is what a 2pc-xa run found after it: tests assert on it.
type xaCheck struct {
	prefix    string // gid prefix of the run's transactions
	committed int64  // transactions known to have succeeded, warm-up and cut-off ones included
	mysqlSum  int64  // SUM(n) of the MariaDB table before it was dropped
	pgSum     int64  // SUM(n) of the PostgreSQL table
	summed    bool   // both sums were read
}

// xaWorkload is the ModeTwoPCXA state: the two database pools, the bench
// tables, and the HTTP server of the two XA participants.
type xaWorkload struct {
	mysql, pg *sql.DB
	table     string // bench_xa_<pid>_<random>, on both sides
	prefix    string // every gid of the run starts with it
	seq       atomic.Int64
	committed atomic.Int64

	srv  *http.Server
	base string
	done chan struct{}

	mu       sync.Mutex
	inflight map[string]struct{} // gids submitted whose outcome is not known yet
	dropped  bool
}

// validateDSNs checks the syntax of the two DSNs (no connection).
func validateDSNs(c Config) []string {
	var errs []string
	if _, err := mysqlConnector(c.MySQLDSN); err != nil {
		errs = append(errs, fmt.Sprintf("mysql-dsn: %v", err))
	}
	if _, err := pgConfig(c.PostgresDSN); err != nil {
		errs = append(errs, fmt.Sprintf("postgres-dsn: %v", err))
	}
	return errs
}

// mysqlConnector parses dsn and sets the branch lock timeout unless the
// DSN sets one.
func mysqlConnector(dsn string) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.Params["innodb_lock_wait_timeout"]; !ok {
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		cfg.Params["innodb_lock_wait_timeout"] = strconv.Itoa(int(xaLockTimeout / time.Second))
	}
	return cfg, nil
}

// pgConfig parses dsn and sets the branch lock timeout unless the DSN
// sets one.
func pgConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, errors.New(strings.ReplaceAll(err.Error(), dsn, redactDSN(dsn)))
	}
	if _, ok := cfg.RuntimeParams["lock_timeout"]; !ok {
		cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(xaLockTimeout.Milliseconds(), 10)
	}
	return cfg, nil
}

// redactDSN hides the password of a URL-style DSN.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "(DSN)"
}

// openXA connects to both databases, creates the xa package's tables and
// the bench tables, and starts the participants' server. Pools hold
// concurrency+4 connections: one per in-flight branch, plus a few for
// commits and aborts.
func openXA(ctx context.Context, cfg Config) (_ *xaWorkload, err error) {
	var b [4]byte
	rand.Read(b[:])
	suffix := strconv.Itoa(os.Getpid()) + "_" + hex.EncodeToString(b[:])
	w := &xaWorkload{
		table:    "bench_xa_" + suffix,
		prefix:   "bxa-" + strings.ReplaceAll(suffix, "_", "-") + "-",
		inflight: map[string]struct{}{},
		done:     make(chan struct{}),
	}
	mc, err := mysqlConnector(cfg.MySQLDSN)
	if err != nil {
		return nil, fmt.Errorf("%w: mysql-dsn: %v", ErrConfig, err)
	}
	pc, err := pgConfig(cfg.PostgresDSN)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres-dsn: %v", ErrConfig, err)
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("%w: mysql-dsn: %v", ErrConfig, err)
	}
	w.mysql = sql.OpenDB(conn)
	w.pg = stdlib.OpenDB(*pc)
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	pool := cfg.Concurrency + 4
	for _, db := range []*sql.DB{w.mysql, w.pg} {
		db.SetMaxOpenConns(pool)
		db.SetMaxIdleConns(pool)
		db.SetConnMaxIdleTime(time.Minute)
	}
	redMySQL := mc.Clone()
	if redMySQL.Passwd != "" {
		redMySQL.Passwd = "xxxxx"
	}
	for _, s := range []struct {
		name string
		db   *sql.DB
		d    xa.Dialect
	}{
		{"MariaDB/MySQL at " + redMySQL.FormatDSN(), w.mysql, xa.MySQL},
		{"PostgreSQL at " + redactDSN(cfg.PostgresDSN), w.pg, xa.Postgres},
	} {
		pctx, cancel := context.WithTimeout(ctx, xaConnectTimeout)
		err := s.db.PingContext(pctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s does not answer: %w", s.name, err)
		}
		if err := xa.CreateTable(ctx, s.db, s.d); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if err := w.createBenchTable(ctx, s.db); err != nil {
			return nil, fmt.Errorf("%s: create %s: %w", s.name, w.table, err)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("xa participants: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+xaPathMySQL, xa.Handler(w.mysql, xa.MySQL, w.work("?")))
	mux.Handle("POST "+xaPathPostgres, xa.Handler(w.pg, xa.Postgres, w.work("$1")))
	w.base = "http://" + ln.Addr().String()
	w.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(w.done)
		w.srv.Serve(ln)
	}()
	return w, nil
}

// createBenchTable creates the table and its xaRows rows, all at zero.
func (w *xaWorkload) createBenchTable(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+w.table+" (id INT PRIMARY KEY, n BIGINT NOT NULL)"); err != nil {
		return err
	}
	var sb strings.Builder
	sb.WriteString("INSERT INTO " + w.table + " (id, n) VALUES ")
	for i := 1; i <= xaRows; i++ {
		if i > 1 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, "(%d,0)", i)
	}
	_, err := db.ExecContext(ctx, sb.String())
	return err
}

// work is a branch's business SQL: increment one random row. ph is the
// dialect's placeholder.
func (w *xaWorkload) work(ph string) xa.WorkFunc {
	stmt := "UPDATE " + w.table + " SET n = n + 1 WHERE id = " + ph
	return func(ctx context.Context, _ participant.Branch, _ []byte, conn *sql.Conn) error {
		res, err := conn.ExecContext(ctx, stmt, 1+mrand.IntN(xaRows))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return participant.Reject("updated %d rows, want 1", n)
		}
		return nil
	}
}

// track records that gid's outcome is unknown (add) or known (!add).
func (w *xaWorkload) track(gid string, add bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if add {
		w.inflight[gid] = struct{}{}
	} else {
		delete(w.inflight, gid)
	}
}

// txn submits a 2PC whose two branches are XA branches, one on each
// database, and waits for its outcome.
func (w *xaWorkload) txn(c *client.Client) txnFunc {
	mysqlURL, pgURL := w.base+xaPathMySQL, w.base+xaPathPostgres
	return func(ctx context.Context) error {
		// A transaction is not cancelled by the end of the run (the worker
		// drops it as cut off, after it ended): a cancelled call would
		// cancel the coordinator's phase-one calls too, and on MariaDB an
		// XA PREPARE interrupted by its session's disconnection can leave a
		// transaction that holds its locks and that XA RECOVER does not
		// list (see docs/performance.md).
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), xaSettleTimeout)
		defer cancel()
		gid := w.prefix + strconv.FormatInt(w.seq.Add(1), 10)
		w.track(gid, true)
		tx, err := c.NewTwoPC(gid).AddBranch("m", mysqlURL, payload).AddBranch("p", pgURL, payload).SubmitAndWait(ctx)
		if err != nil {
			return err // outcome unknown: finish waits for it
		}
		w.track(gid, false)
		if tx.Status == client.StatusSucceeded {
			w.committed.Add(1)
		}
		return succeeded(ModeTwoPCXA, tx)
	}
}

// ours reports whether a prepared branch belongs to this run.
func (w *xaWorkload) ours(p xa.Prepared) bool { return strings.HasPrefix(p.GID, w.prefix) }

// finish ends the run cleanly while the coordinator still runs: it waits
// for the transactions the end of the run cut off, stops the participants,
// ends any branch of the run still prepared as the coordinator decided,
// sums the bench tables and drops them.
func (w *xaWorkload) finish(ctx context.Context, c *client.Client) (xaCheck, error) {
	ctx = context.WithoutCancel(ctx)
	w.mu.Lock()
	var gids []string
	for gid := range w.inflight {
		gids = append(gids, gid)
	}
	w.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, xaSettleTimeout)
	var wg sync.WaitGroup
	for _, gid := range gids {
		wg.Go(func() {
			tx, err := c.Wait(sctx, gid)
			if err == nil && tx.Status == client.StatusSucceeded {
				w.committed.Add(1)
			}
		})
	}
	wg.Wait()
	cancel()

	w.stopServer()
	cctx, cancel := context.WithTimeout(ctx, xaCleanupTimeout)
	defer cancel()
	var errs []error
	for _, s := range w.sides() {
		r := &xa.Resolver{DB: s.db, Dialect: s.d, Decide: c.Decision, Match: w.ours}
		if _, err := r.ResolveOnce(cctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: resolve prepared branches: %w", s.name, err))
		}
	}
	chk := xaCheck{prefix: w.prefix, committed: w.committed.Load(), summed: true}
	for _, s := range w.sides() {
		var sum sql.NullInt64
		if err := s.db.QueryRowContext(cctx, "SELECT SUM(n) FROM "+w.table).Scan(&sum); err != nil {
			errs = append(errs, fmt.Errorf("%s: sum %s: %w", s.name, w.table, err))
			chk.summed = false
		}
		if s.d == xa.MySQL {
			chk.mysqlSum = sum.Int64
		} else {
			chk.pgSum = sum.Int64
		}
	}
	if err := w.drop(cctx); err != nil {
		errs = append(errs, err)
	}
	return chk, joinErrs(errs)
}

type xaSide struct {
	name string
	db   *sql.DB
	d    xa.Dialect
}

func (w *xaWorkload) sides() []xaSide {
	return []xaSide{{"mariadb", w.mysql, xa.MySQL}, {"postgres", w.pg, xa.Postgres}}
}

func (w *xaWorkload) stopServer() {
	if w.srv != nil {
		w.srv.Close()
		<-w.done
		w.srv = nil
	}
}

// drop deletes the run's rows of the xa package's tables and drops the
// bench tables, once.
func (w *xaWorkload) drop(ctx context.Context) error {
	w.mu.Lock()
	done := w.dropped
	w.dropped = true
	w.mu.Unlock()
	if done {
		return nil
	}
	var errs []error
	like := "'" + w.prefix + "%'" // the prefix is [a-z0-9-] only
	for _, s := range w.sides() {
		if s.db == nil {
			continue
		}
		for _, t := range []string{xa.MarkerTable, xa.AbortTable, xa.NameTable} {
			if _, err := s.db.ExecContext(ctx, "DELETE FROM "+t+" WHERE gid LIKE "+like); err != nil {
				errs = append(errs, fmt.Errorf("%s: delete the run's rows of %s: %w", s.name, t, err))
			}
		}
		if _, err := s.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+w.table); err != nil {
			errs = append(errs, fmt.Errorf("%s: drop %s: %w", s.name, w.table, err))
		}
	}
	return joinErrs(errs)
}

// joinErrs joins errs on one line.
func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// close stops the participants and, unless finish did, rolls back every
// branch of the run still prepared (the coordinator is gone: nobody will
// ask for them) and drops the tables; then it closes the pools.
func (w *xaWorkload) close() {
	w.stopServer()
	ctx, cancel := context.WithTimeout(context.Background(), xaCleanupTimeout)
	defer cancel()
	abort := func(context.Context, string) (string, error) { return xa.DecisionAbort, nil }
	if !w.isDropped() {
		for _, s := range w.sides() {
			if s.db != nil {
				r := &xa.Resolver{DB: s.db, Dialect: s.d, Decide: abort, Match: w.ours}
				r.ResolveOnce(ctx)
			}
		}
		w.drop(ctx)
	}
	for _, s := range w.sides() {
		if s.db != nil {
			s.db.Close()
		}
	}
}

func (w *xaWorkload) isDropped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}
