package participant

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// backdate moves the created_at of gid's barrier rows two hours back, by
// the database's clock.
func (f *fixture) backdate(t *testing.T, gid string) {
	t.Helper()
	var q string
	switch f.be.dialect {
	case Postgres:
		q = "UPDATE " + f.table + " SET created_at = now() - interval '2 hours' WHERE gid = $1"
	case MySQL:
		q = "UPDATE " + f.table + " SET created_at = NOW(6) - INTERVAL 2 HOUR WHERE gid = ?"
	default:
		q = "UPDATE " + f.table + " SET created_at = datetime('now', '-2 hours') WHERE gid = ?"
	}
	if _, err := f.db.ExecContext(t.Context(), q, gid); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) countRows(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+f.table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// hasCreatedAtIndex reports whether the barrier table has its created_at index.
func (f *fixture) hasCreatedAtIndex(t *testing.T) bool {
	t.Helper()
	index, _, bare := createdAtIndex(f.table)
	var q string
	switch f.be.dialect {
	case Postgres:
		q = "SELECT COUNT(*) FROM pg_indexes WHERE tablename = $1 AND indexname = $2"
	case MySQL:
		q = "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?"
	default:
		q = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name = ?"
	}
	var n int
	if err := f.db.QueryRowContext(t.Context(), q, bare, index).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestBarrierDeleteOlderThan deletes exactly the rows older than the
// retention, by the database's clock, and leaves the protection of the
// younger ones intact.
func TestBarrierDeleteOlderThan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		old := Branch{GID: "old", BranchID: "b1", Op: OpAction, Mode: "saga"}
		young := Branch{GID: "young", BranchID: "b1", Op: OpCompensate, Mode: "saga"}
		if err := f.do(t, old); err != nil {
			t.Fatal(err)
		}
		if err := f.do(t, young); err != nil { // a null compensation: two rows
			t.Fatal(err)
		}
		f.backdate(t, "old")
		n, err := f.br.DeleteOlderThan(t.Context(), time.Hour)
		if err != nil || n != 1 {
			t.Fatalf("DeleteOlderThan(1h) = %d, %v; want 1 row", n, err)
		}
		if got := f.barrierRows(t, "old"); got != nil {
			t.Errorf("old rows left: %v", got)
		}
		if got := fmt.Sprint(f.barrierRows(t, "young")); got != "[action:compensate compensate:compensate]" {
			t.Errorf("young rows = %s", got)
		}
		// The young rows still protect: the late action is refused.
		if err := f.do(t, Branch{GID: "young", BranchID: "b1", Op: OpAction, Mode: "saga"}); err == nil || !strings.Contains(err.Error(), "hanging") {
			t.Errorf("late action after the compensation: %v, want refused as hanging", err)
		}
		if n, err := f.br.DeleteOlderThan(t.Context(), time.Hour); err != nil || n != 0 {
			t.Errorf("second DeleteOlderThan = %d, %v; want 0", n, err)
		}
		if _, err := f.br.DeleteOlderThan(t.Context(), 0); err == nil {
			t.Error("DeleteOlderThan(0) accepted")
		}
	})
}

// TestBarrierDeleteOlderThanCaveat shows what the documentation warns of:
// once the rows of a compensated branch are deleted, a late action for it
// is no longer recognized as hanging and runs.
func TestBarrierDeleteOlderThanCaveat(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		comp := Branch{GID: "g", BranchID: "b1", Op: OpCompensate, Mode: "saga"}
		if err := f.do(t, comp); err != nil {
			t.Fatal(err)
		}
		f.backdate(t, "g")
		if _, err := f.br.DeleteOlderThan(t.Context(), time.Hour); err != nil {
			t.Fatal(err)
		}
		late := Branch{GID: "g", BranchID: "b1", Op: OpAction, Mode: "saga"}
		if err := f.do(t, late); err != nil {
			t.Fatalf("late action after cleanup: %v", err)
		}
		if f.runs(t, late) != 1 {
			t.Error("the late action did not run: the caveat no longer holds, update the docs")
		}
	})
}

// TestBarrierDeleteOlderThanBatches deletes more rows than one batch, and
// CreateTable restores a missing created_at index (a table from an older
// release).
func TestBarrierDeleteOlderThanBatches(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		if !f.hasCreatedAtIndex(t) {
			t.Error("CreateTable made no created_at index")
		}
		index, _, _ := createdAtIndex(f.table)
		drop := "DROP INDEX " + index
		if f.be.dialect == MySQL {
			drop += " ON " + f.table
		}
		if _, err := f.db.ExecContext(t.Context(), drop); err != nil {
			t.Fatal(err)
		}
		if err := f.br.CreateTable(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !f.hasCreatedAtIndex(t) {
			t.Error("CreateTable did not restore the created_at index")
		}

		const total = 2*barrierDeleteBatch + 7
		insertOld(t, f, total)
		if err := f.do(t, Branch{GID: "young", BranchID: "b1", Op: OpAction, Mode: "saga"}); err != nil {
			t.Fatal(err)
		}
		n, err := f.br.DeleteOlderThan(t.Context(), time.Hour)
		if err != nil || n != total {
			t.Fatalf("DeleteOlderThan = %d, %v; want %d", n, err, total)
		}
		if got := f.countRows(t); got != 1 {
			t.Errorf("%d rows left, want the young one", got)
		}
	})
}

// insertOld inserts n action rows in one transaction, then backdates them.
func insertOld(t *testing.T, f *fixture, n int) {
	t.Helper()
	ctx := t.Context()
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const chunk = 250
	for start := 0; start < n; start += chunk {
		var sb strings.Builder
		var args []any
		sb.WriteString("INSERT INTO " + f.table + " (gid, branch_id, op, reason) VALUES ")
		for i := start; i < min(n, start+chunk); i++ {
			if i > start {
				sb.WriteString(", ")
			}
			k := len(args)
			d := f.be.dialect
			fmt.Fprintf(&sb, "(%s, %s, %s, %s)", d.placeholder(k+1), d.placeholder(k+2), d.placeholder(k+3), d.placeholder(k+4))
			args = append(args, "old", fmt.Sprint("b", i), "action", "action")
		}
		if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	f.backdate(t, "old")
}

// TestBarrierCreateTableConcurrent: services starting together all call
// CreateTable on a table without its index; every call succeeds.
func TestBarrierCreateTableConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		index, _, _ := createdAtIndex(f.table)
		drop := "DROP INDEX " + index
		if f.be.dialect == MySQL {
			drop += " ON " + f.table
		}
		if _, err := f.db.ExecContext(t.Context(), drop); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 6)
		for range cap(errs) {
			go func() { errs <- f.br.CreateTable(t.Context()) }()
		}
		for range cap(errs) {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		if !f.hasCreatedAtIndex(t) {
			t.Error("no created_at index")
		}
	})
}
