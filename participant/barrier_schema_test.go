package participant

import (
	"context"
	"database/sql"
	"testing"

	"github.com/concordtm/concord/internal/testenv"
)

// A barrier set up on PostgreSQL in a table of the service's choice, in a
// schema of its own (what ExampleNewBarrier used to show without running):
// CreateTable makes the table there, again and again, and Do records its
// rows in it.
func TestNewBarrierInSchema(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := t.Context()
	schema := testenv.UniqueName(t, "billing")
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	table := schema + ".concord_barrier"
	br, err := NewBarrier(db, Postgres, WithBarrierTable(table))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // at startup or from migrations: idempotent
		if err := br.CreateTable(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = $1 AND table_name = 'concord_barrier'`, schema).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%s: %d tables (%v), want 1", table, n, err)
	}
	b := Branch{GID: "order-1", BranchID: "charge", Op: OpAction, Mode: "saga"}
	ran := 0
	for range 2 { // the retry does nothing
		if err := br.Do(ctx, b, func(context.Context, *sql.Tx) error { ran++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE gid = 'order-1'").Scan(&n); err != nil || n != 1 || ran != 1 {
		t.Errorf("after an action and its retry: %d rows in %s (%v), business code ran %d times; want 1 and 1", n, table, err, ran)
	}
}
