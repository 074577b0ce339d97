package demo

import (
	"bytes"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant/xa"
)

// TestMain removes the package's databases (and the private PostgreSQL
// server, if testenv.PostgresXA started one) after the tests.
func TestMain(m *testing.M) { testenv.Main(m) }

// TestRunTwoPCOnRealDatabases plays the 2PC purchases with the order
// service on PostgreSQL and the inventory service on MariaDB (skipped
// without the servers, except under CI=true).
func TestRunTwoPCOnRealDatabases(t *testing.T) {
	pg, my := testenv.PostgresXA(t), testenv.MariaDBXA(t)
	var out bytes.Buffer
	rep, err := Run(t.Context(), Options{Mode: ModeTwoPC, DataDir: t.TempDir(), Out: &out,
		PostgresDSN: testenv.PostgresXADSN(t), MySQLDSN: testenv.MariaDBXADSN(t)})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Modes) != 1 || !rep.Modes[0].XA || len(rep.Modes[0].Purchases) != 2 {
		t.Fatalf("report: %+v, want one XA 2pc mode with two purchases", rep.Modes)
	}
	mr := rep.Modes[0]
	ok, failed := mr.Purchases[0], mr.Purchases[1]
	if ok.User != "B" || ok.Status != client.StatusSucceeded {
		t.Errorf("purchase 1: %s → %s, want B → succeeded", ok.User, ok.Status)
	}
	if failed.User != "A" || failed.Status != client.StatusAborted || failed.Reason == "" {
		t.Errorf("purchase 2: %s → %s (%q), want A → aborted with a reason", failed.User, failed.Status, failed.Reason)
	}
	wantTables(t, "initial", mr.Initial, map[string][]string{
		"orders":   nil,
		"stock":    {"sku=T-shirt qty=10 reserved=0"},
		"accounts": {"user=A balance=3000 frozen=0", "user=B balance=100 frozen=0"},
	})
	final := map[string][]string{
		"orders":   {"id=1 user=B sku=T-shirt qty=2 amount=30 status=committed"},
		"stock":    {"sku=T-shirt qty=8 reserved=0"},
		"accounts": {"user=A balance=3000 frozen=0", "user=B balance=70 frozen=0"},
	}
	wantTables(t, "after B's purchase", ok.After, final)
	wantTables(t, "after A's purchase", failed.After, final)
	if !failed.Unchanged() {
		t.Errorf("A's failed purchase changed the shop:\n%s", strings.Join(failed.Before.Diff(failed.After), "\n"))
	}
	for _, tb := range mr.Initial {
		want := map[string]string{"orders": "PostgreSQL", "stock": "MariaDB", "accounts": "payment.db"}[tb.Name]
		if tb.DB != want && !(tb.Name == "stock" && tb.DB == "MySQL") {
			t.Errorf("table %s lives in %s, want %s", tb.Name, tb.DB, want)
		}
	}
	for _, want := range []string{
		"PREPARE TRANSACTION on PostgreSQL: the order row exists but nobody else can see it (another session finds 0 rows for order #1)",
		"XA PREPARE on ",
		"votes NO: stock short: have 8, want 100",
		"ROLLBACK PREPARED on PostgreSQL",
		"COMMIT PREPARED on PostgreSQL",
		"nothing changed anywhere for the failed purchase",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "✗") {
		t.Error("output reports a failure or a leftover")
	}

	// Nothing of the demo is left prepared, its tables are gone, and so
	// are the bookkeeping rows of its gids.
	if len(mr.XATables) != 2 {
		t.Fatalf("XATables = %v, want the orders and the stock table", mr.XATables)
	}
	for _, c := range []struct {
		name       string
		db         *sql.DB
		d          xa.Dialect
		table      string
		tableQuery string
		markers    string
	}{
		{"PostgreSQL", pg, xa.Postgres, mr.XATables[0],
			`SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`,
			`SELECT count(*) FROM ` + xa.MarkerTable + ` WHERE gid = $1`},
		{"MariaDB", my, xa.MySQL, mr.XATables[1],
			`SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`,
			`SELECT count(*) FROM ` + xa.MarkerTable + ` WHERE gid = ?`},
	} {
		list, err := xa.Recover(t.Context(), c.db, c.d)
		if err != nil {
			t.Fatalf("%s: recover: %v", c.name, err)
		}
		for _, p := range list {
			if p.GID == ok.GID || p.GID == failed.GID {
				t.Errorf("%s: %s is still prepared", c.name, p.XID)
			}
		}
		var n int
		if err := c.db.QueryRowContext(t.Context(), c.tableQuery, c.table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s: table %s was not dropped", c.name, c.table)
		}
		for _, gid := range []string{ok.GID, failed.GID} {
			if err := c.db.QueryRowContext(t.Context(), c.markers, gid).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%s: %d bookkeeping rows of %s left", c.name, n, gid)
			}
		}
	}
}

func TestRunXAOptions(t *testing.T) {
	for _, o := range []Options{
		{Mode: ModeSaga, PostgresDSN: "postgres://x", MySQLDSN: "root@tcp(x)/y"},
		{Mode: ModeTwoPC, PostgresDSN: "postgres://x"},
		{Mode: ModeTwoPC, MySQLDSN: "root@tcp(x)/y"},
	} {
		if _, err := Run(t.Context(), o); !errors.Is(err, ErrXAOptions) {
			t.Errorf("Run(%+v) = %v, want ErrXAOptions", o, err)
		}
	}
}

func TestRunXAUnreachable(t *testing.T) {
	_, err := Run(t.Context(), Options{Mode: ModeTwoPC, DataDir: t.TempDir(),
		PostgresDSN: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
		MySQLDSN:    "root@tcp(127.0.0.1:1)/test?timeout=2s"})
	if err == nil || !strings.Contains(err.Error(), "cannot connect to PostgreSQL") {
		t.Fatalf("Run with an unreachable PostgreSQL = %v, want a connection error", err)
	}
}
