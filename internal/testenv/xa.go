package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// EnvPostgresXA overrides where PostgresXA creates its databases: the DSN
// of a server with max_prepared_transactions > 0, or "private" to start a
// private server even when the shared one allows prepared transactions.
const EnvPostgresXA = "CONCORD_TEST_POSTGRES_XA"

// The databases of PostgresXA and MariaDBXA, and the private PostgreSQL
// server, live as long as the test binary: created by the first test that
// asks, shared by the package's tests, removed by Main after the last.
var binary struct {
	mu       sync.Mutex
	main     bool           // Main is running the tests
	pg, my   *binaryDB      // nil until first asked for
	cleanups []func() error // run by Main, last first
}

// binaryDB is a database of the test binary's own, or why there is none.
type binaryDB struct {
	dsn string
	err error // Require'd by every test that asks
}

// Main runs the package's tests (m.Run) and then removes what PostgresXA
// and MariaDBXA created for them: their databases, and the private
// PostgreSQL server if one was started. A package whose tests use those
// helpers declares
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	binary.mu.Lock()
	binary.main = true
	binary.mu.Unlock()
	code := m.Run()
	binary.mu.Lock()
	cleanups := binary.cleanups
	binary.cleanups = nil
	binary.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		if err := cleanups[i](); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: cleanup: %v\n", err)
		}
	}
	os.Exit(code)
}

// PostgresXA returns a connection pool (driver "pgx", closed when the test
// ends) to a PostgreSQL database that allows prepared transactions and that
// only this test binary uses. See PostgresXADSN.
func PostgresXA(t testing.TB) *sql.DB {
	t.Helper()
	return openBinaryDB(t, "pgx", PostgresXADSN(t))
}

// PostgresXADSN returns the DSN of a PostgreSQL database of this test
// binary's own (created at the first call, dropped by Main) on a server
// whose max_prepared_transactions is above zero, for the tests of XA
// participants:
//
//   - $CONCORD_TEST_POSTGRES_XA if set to a DSN;
//   - else the shared server (PostgresDSN) if it allows prepared
//     transactions;
//   - else (or with CONCORD_TEST_POSTGRES_XA=private) a private server,
//     started once per test binary with initdb in a temporary directory,
//     on a free loopback port, as the postgres user when running as root;
//     Main stops it and removes its directory. The server binaries are
//     found under /usr/lib/postgresql/*/bin, in PATH, or in
//     $CONCORD_TEST_POSTGRES_BIN.
//
// When none of these can be had, the test ends at once (Require: a skip,
// a failure under CI=true) with a message that says what to install or set.
func PostgresXADSN(t testing.TB) string {
	t.Helper()
	return binaryDSN(t, "PostgresXA", "PostgreSQL with prepared transactions (testenv.PostgresXA)", &binary.pg, newPostgresXADB)
}

// MariaDBXA returns a connection pool (driver "mysql", closed when the test
// ends) to a MySQL/MariaDB database that only this test binary uses. See
// MariaDBXADSN.
func MariaDBXA(t testing.TB) *sql.DB {
	t.Helper()
	return openBinaryDB(t, "mysql", MariaDBXADSN(t))
}

// MariaDBXADSN returns the DSN of a database of this test binary's own on
// the test MySQL/MariaDB server (MariaDBDSN), created at the first call
// and dropped by Main. XA participants keep their bookkeeping in tables of
// fixed names (participant/xa), so tests of different packages must not
// share a database: a prepared branch one package leaves behind would
// hold locks another package's tests wait on.
func MariaDBXADSN(t testing.TB) string {
	t.Helper()
	return binaryDSN(t, "MariaDBXA", "a MariaDB database of the test binary's own (testenv.MariaDBXA)", &binary.my, newMariaDBXADB)
}

func binaryDSN(t testing.TB, helper, what string, slot **binaryDB, create func() *binaryDB) string {
	t.Helper()
	binary.mu.Lock()
	if !binary.main {
		binary.mu.Unlock()
		t.Fatalf("testenv: %s creates a database (and maybe a server) that lives as long as the test binary, "+
			"removed by testenv.Main: add to the package's tests\n\tfunc TestMain(m *testing.M) { testenv.Main(m) }", helper)
	}
	if *slot == nil { // under binary.mu: concurrent first callers wait for one creation
		*slot = create()
	}
	db := *slot
	binary.mu.Unlock()
	Require(t, what, db.err)
	return db.dsn
}

// atExit adds a cleanup that Main runs after the tests. Called with
// binary.mu held.
func atExit(f func() error) { binary.cleanups = append(binary.cleanups, f) }

// binaryDBName returns a database name for this test binary: its package
// (the binary is <package>.test) and a random suffix.
func binaryDBName() (string, error) {
	pkg := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	pkg = regexp.MustCompile(`[^a-z0-9_]+`).ReplaceAllString(strings.ToLower(pkg), "_")
	return uniqueName("concord_" + pkg)
}

// setupTimeout bounds each step of creating or dropping a database.
const setupTimeout = 30 * time.Second

func newPostgresXADB() *binaryDB {
	admin, private := os.Getenv(EnvPostgresXA), false
	var why string
	switch admin {
	case "":
		admin = PostgresDSN()
		mpt, err := maxPreparedTransactions(admin)
		switch {
		case err != nil:
			why = fmt.Sprintf("the shared PostgreSQL at %s does not answer (%v)", redactURL(admin), err)
		case mpt == 0:
			why = fmt.Sprintf("the shared PostgreSQL at %s has max_prepared_transactions = 0", redactURL(admin))
		}
		private = why != ""
	case "private":
		private, why = true, EnvPostgresXA+"=private"
	default:
		mpt, err := maxPreparedTransactions(admin)
		if err == nil && mpt == 0 {
			err = fmt.Errorf("its max_prepared_transactions is 0")
		}
		if err != nil {
			return &binaryDB{err: fmt.Errorf("PostgreSQL at %s (%s): %w", redactURL(admin), EnvPostgresXA, err)}
		}
	}
	if private {
		srv, err := startPrivatePostgres()
		if err != nil {
			return &binaryDB{err: fmt.Errorf("%s, and a private server with prepared transactions could not be started: %w.\n"+
				"To run these tests: install PostgreSQL's server binaries (Debian: apt-get install postgresql) so the tests start their own server, "+
				"or set max_prepared_transactions = 100 on the shared server and restart it (.ci/run does), "+
				"or point %s at a server that allows prepared transactions", why, err, EnvPostgresXA)}
		}
		atExit(srv.stop)
		admin = srv.dsn("postgres")
	}
	name, err := binaryDBName()
	if err != nil {
		return &binaryDB{err: err}
	}
	if err := adminExec("pgx", admin, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return &binaryDB{err: fmt.Errorf("PostgreSQL at %s: create database %s: %w", redactURL(admin), name, err)}
	}
	dsn := withPostgresDB(admin, name)
	if !private { // a private server goes with its databases
		atExit(func() error { return dropPostgresDB(admin, dsn, name) })
	}
	return &binaryDB{dsn: dsn}
}

// startPrivatePostgres starts the binary's private server, with a bounded
// wait.
func startPrivatePostgres() (*pgServer, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	return startPostgres(context.Background(), bin)
}

func maxPreparedTransactions(dsn string) (int, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	var v string
	if err := db.QueryRowContext(ctx, "SHOW max_prepared_transactions").Scan(&v); err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// dropPostgresDB rolls back the prepared transactions left in database
// name (a failed test's; they would keep it from being dropped) and drops
// it.
func dropPostgresDB(admin, dsn, name string) error {
	if db, err := sql.Open("pgx", dsn); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		rows, err := db.QueryContext(ctx, "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")
		var gids []string
		for err == nil && rows.Next() {
			var gid string
			if rows.Scan(&gid) == nil {
				gids = append(gids, gid)
			}
		}
		if rows != nil {
			rows.Close()
		}
		for _, gid := range gids {
			db.ExecContext(ctx, "ROLLBACK PREPARED '"+strings.ReplaceAll(gid, "'", "''")+"'")
		}
		cancel()
		db.Close()
	}
	err := adminExec("pgx", admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	if err != nil { // before PostgreSQL 13
		err = adminExec("pgx", admin, "DROP DATABASE IF EXISTS "+name)
	}
	if err != nil {
		return fmt.Errorf("drop PostgreSQL database %s: %w", name, err)
	}
	return nil
}

func newMariaDBXADB() *binaryDB {
	admin := MariaDBDSN()
	cfg, err := mysql.ParseDSN(admin)
	if err != nil {
		return &binaryDB{err: fmt.Errorf("MariaDB DSN %s (%s): %w", redactMySQL(admin), EnvMySQL, err)}
	}
	name, err := binaryDBName()
	if err != nil {
		return &binaryDB{err: err}
	}
	if err := adminExec("mysql", admin, "CREATE DATABASE "+name); err != nil {
		return &binaryDB{err: fmt.Errorf("MariaDB at %s (set %s): create database %s: %w", redactMySQL(admin), EnvMySQL, name, err)}
	}
	cfg.DBName = name
	atExit(func() error {
		// A branch a failed test left prepared would hold its tables'
		// metadata locks, and DROP DATABASE would wait for it (a year, by
		// default): give up after 5s and leave the database.
		if err := adminExec("mysql", admin, "SET SESSION lock_wait_timeout = 5", "DROP DATABASE IF EXISTS "+name); err != nil {
			return fmt.Errorf("drop MariaDB database %s: %w", name, err)
		}
		return nil
	})
	return &binaryDB{dsn: cfg.FormatDSN()}
}

// adminExec runs statements on one connection of a new pool to dsn.
func adminExec(driver, dsn string, stmts ...string) error {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// withPostgresDB returns dsn with its database replaced by name.
func withPostgresDB(dsn, name string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name // keyword/value: the last setting wins
}

func openBinaryDB(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
