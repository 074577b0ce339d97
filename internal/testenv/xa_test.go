package testenv

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// preparedRoundTrip prepares a transaction on db and commits it.
func preparedRoundTrip(t *testing.T, db *sql.DB) {
	t.Helper()
	ctx := t.Context()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	table, gid := UniqueName(t, "tenv"), UniqueName(t, "tenv_gid")
	for _, q := range []string{
		"BEGIN",
		"CREATE TABLE " + table + " (id INT PRIMARY KEY)",
		"INSERT INTO " + table + " VALUES (1)",
		"PREPARE TRANSACTION '" + gid + "'",
		"COMMIT PREPARED '" + gid + "'",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after COMMIT PREPARED: %d, %v; want 1", n, err)
	}
}

// TestPostgresXA: whichever server the machine offers, the database is the
// binary's own and prepared transactions work in it.
func TestPostgresXA(t *testing.T) {
	db := PostgresXA(t)
	var name string
	if err := db.QueryRowContext(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "concord_testenv_") {
		t.Errorf("database %q, want one named after the package (concord_testenv_…)", name)
	}
	if again := PostgresXADSN(t); again != PostgresXADSN(t) {
		t.Errorf("PostgresXADSN changed between calls")
	}
	preparedRoundTrip(t, db)
}

// TestPrivatePostgres starts a private server the way PostgresXA does when
// the shared one has max_prepared_transactions = 0, whatever the shared
// one's setting, and checks that stop removes it.
func TestPrivatePostgres(t *testing.T) {
	bin, err := postgresBinDir()
	Require(t, "PostgreSQL server binaries", err)
	start := time.Now()
	srv, err := startPostgres(t.Context(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("private PostgreSQL from %s ready in %v", bin, time.Since(start).Round(time.Millisecond))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.stop()
		}
	})
	db, err := sql.Open("pgx", srv.dsn("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var mpt string
	if err := db.QueryRowContext(t.Context(), "SHOW max_prepared_transactions").Scan(&mpt); err != nil || mpt != "100" {
		t.Fatalf("max_prepared_transactions = %q, %v; want 100", mpt, err)
	}
	preparedRoundTrip(t, db)
	db.Close()
	stopped = true
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	if exists(srv.dir) {
		t.Errorf("%s still exists after stop", srv.dir)
	}
	if _, err := maxPreparedTransactions(srv.dsn("postgres") + "&connect_timeout=2"); err == nil {
		t.Errorf("the server still answers after stop")
	}
}

// TestPostgresXAMissingBinaries: with the shared server unusable and no
// server binaries, the helper answers at once, saying what to do.
func TestPostgresXAMissingBinaries(t *testing.T) {
	t.Setenv(EnvPostgresXA, "private")
	t.Setenv("PATH", t.TempDir())
	old := postgresBinGlob
	t.Setenv(EnvPostgresBin, "")
	postgresBinGlob = filepath.Join(t.TempDir(), "*", "bin")
	t.Cleanup(func() { postgresBinGlob = old })
	start := time.Now()
	got := newPostgresXADB()
	if got.err == nil {
		t.Fatalf("newPostgresXADB without binaries: DSN %q, want an error", got.dsn)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the error took %v, want it at once", d)
	}
	for _, want := range []string{"apt-get install postgresql", "max_prepared_transactions", EnvPostgresXA} {
		if !strings.Contains(got.err.Error(), want) {
			t.Errorf("error %q does not mention %q", got.err, want)
		}
	}
}

func TestMariaDBXA(t *testing.T) {
	var name string
	if err := MariaDBXA(t).QueryRowContext(t.Context(), "SELECT DATABASE()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "concord_testenv_") {
		t.Errorf("database %q, want one named after the package (concord_testenv_…)", name)
	}
}

func TestWithPostgresDB(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://u@h:5432/test?sslmode=disable": "postgres://u@h:5432/own?sslmode=disable",
		"host=h user=u dbname=test":                "host=h user=u dbname=test dbname=own",
	} {
		if got := withPostgresDB(dsn, "own"); got != want {
			t.Errorf("withPostgresDB(%q) = %q, want %q", dsn, got, want)
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestPostgresBinDirFromEnv(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(EnvPostgresBin, empty)
	if dir, err := postgresBinDir(); err == nil || !strings.Contains(err.Error(), EnvPostgresBin+"="+empty) {
		t.Errorf("postgresBinDir with %s=%s (empty) = %q, %v; want an error naming the variable", EnvPostgresBin, empty, dir, err)
	}
}

// TestPostgresXASharedServer: when the shared server allows prepared
// transactions (as under .ci/run), PostgresXA creates its database there,
// and Main's cleanup drops it even with a prepared transaction left in it.
// A private server plays the shared one.
func TestPostgresXASharedServer(t *testing.T) {
	bin, err := postgresBinDir()
	Require(t, "PostgreSQL server binaries", err)
	srv, err := startPostgres(t.Context(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.stop() })
	t.Setenv(EnvPostgres, srv.dsn("postgres"))
	t.Setenv(EnvPostgresXA, "")

	binary.mu.Lock()
	n := len(binary.cleanups)
	got := newPostgresXADB()
	added := append([]func() error{}, binary.cleanups[n:]...)
	binary.cleanups = binary.cleanups[:n]
	binary.mu.Unlock()
	if got.err != nil {
		t.Fatal(got.err)
	}
	if want := fmt.Sprintf("127.0.0.1:%d/concord_testenv_", srv.port); !strings.Contains(got.dsn, want) {
		t.Fatalf("DSN %q, want a database on the shared server (%s…)", got.dsn, want)
	}
	if len(added) != 1 {
		t.Fatalf("%d cleanups registered, want 1 (drop the database)", len(added))
	}

	db, err := sql.Open("pgx", got.dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"BEGIN", "CREATE TABLE left_behind (id INT)", "PREPARE TRANSACTION 'left_behind'"} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close()
	db.Close()

	if err := added[0](); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	admin, err := sql.Open("pgx", srv.dsn("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var dbs, prepared int
	if err := admin.QueryRowContext(t.Context(), "SELECT count(*) FROM pg_database WHERE datname LIKE 'concord_testenv_%'").Scan(&dbs); err != nil {
		t.Fatal(err)
	}
	if err := admin.QueryRowContext(t.Context(), "SELECT count(*) FROM pg_prepared_xacts").Scan(&prepared); err != nil {
		t.Fatal(err)
	}
	if dbs != 0 || prepared != 0 {
		t.Errorf("after the cleanup: %d databases of the binary, %d prepared transactions; want none", dbs, prepared)
	}
}
