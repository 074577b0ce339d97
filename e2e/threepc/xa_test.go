package threepc

import (
	"context"
	"database/sql"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/xa"
)

// xaService serves xa.Handler over db: pre-commit inserts the branch's row
// (gid) into a table of its own, inside the XA branch.
func xaService(t *testing.T, d xa.Dialect, db *sql.DB) (url, table string) {
	t.Helper()
	table = testenv.UniqueName(t, "tp3_rows")
	ctx := t.Context()
	if err := xa.CreateTable(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (gid VARCHAR(128) PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	h := xa.Handler(db, d, func(ctx context.Context, b participant.Branch, _ []byte, conn *sql.Conn) error {
		_, err := conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (gid) VALUES ('%s')", table, b.GID))
		return err
	})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		db.ExecContext(context.Background(), "DROP TABLE "+table)
	})
	return srv.URL, table
}

// TestXACommit runs a 3PC whose branches are XA branches on the real
// PostgreSQL and MariaDB: pre-commit prepares each, do-commit commits it.
func TestXACommit(t *testing.T) {
	pg, my := testenv.PostgresXA(t), testenv.MariaDBXA(t)
	pgURL, pgTable := xaService(t, xa.Postgres, pg)
	myURL, myTable := xaService(t, xa.MySQL, my)
	c := startCoord(t, t.TempDir(), "")
	gid := testenv.UniqueName(t, "xa3")
	tx, err := c.Client.NewThreePC(gid).AddBranch("pg", pgURL, nil).AddBranch("maria", myURL, nil).SubmitAndWait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tx.Status != "succeeded" {
		t.Fatalf("%s (%s), want succeeded", tx.Status, tx.Reason)
	}
	for _, q := range []struct {
		db    *sql.DB
		table string
	}{{pg, pgTable}, {my, myTable}} {
		var n int
		if err := q.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+q.table).Scan(&n); err != nil || n != 1 {
			t.Errorf("%s: %d rows, %v; want the committed one", q.table, n, err)
		}
	}
	for _, p := range []struct {
		db *sql.DB
		d  xa.Dialect
	}{{pg, xa.Postgres}, {my, xa.MySQL}} {
		list, err := xa.Recover(t.Context(), p.db, p.d)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range list {
			if b.GID == gid {
				t.Errorf("%v: branch %s still prepared", p.d, b.BranchID)
			}
		}
	}
}
