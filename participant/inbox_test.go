package participant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/concordtm/concord/internal/testenv"
)

// newInbox returns an inbox on its own table plus a ledger table the
// handler appends to, both dropped when the test ends.
func newInbox(t *testing.T, be backend) (*Inbox, *sql.DB, string) {
	t.Helper()
	db := be.open(t)
	table := testenv.UniqueName(t, "cin")
	ledger := table + "_ledger"
	t.Cleanup(func() {
		for _, tbl := range []string{table, ledger} {
			if _, err := db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+tbl); err != nil {
				t.Errorf("drop %s: %v", tbl, err)
			}
		}
	})
	in, err := NewInbox(db, be.dialect, WithInboxTable(table))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := in.CreateTable(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	col := "VARCHAR(255)"
	if be.dialect == MySQL {
		col = "VARBINARY(255)" // compare IDs exactly, as the inbox does
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE "+ledger+" (message_id "+col+" NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return in, db, ledger
}

func TestInbox(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			in, db, ledger := newInbox(t, be)
			insert := fmt.Sprintf("INSERT INTO %s (message_id) VALUES (%s)", ledger, be.dialect.placeholder(1))
			record := func(id string) func(ctx context.Context, tx *sql.Tx) error {
				return func(ctx context.Context, tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, insert, id)
					return err
				}
			}
			count := func(id string) (n int) {
				t.Helper()
				q := fmt.Sprintf("SELECT count(*) FROM %s WHERE message_id = %s", ledger, be.dialect.placeholder(1))
				if err := db.QueryRowContext(t.Context(), q, id).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}

			// First delivery runs, the second is a duplicate.
			for i, want := range []bool{true, false} {
				ran, err := in.Handle(t.Context(), "m1", record("m1"))
				if err != nil || ran != want {
					t.Fatalf("delivery %d: ran=%v err=%v, want ran=%v", i, ran, err, want)
				}
			}
			// A failing handler rolls back its inbox row: the redelivery runs.
			boom := errors.New("boom")
			if _, err := in.Handle(t.Context(), "m2", func(ctx context.Context, tx *sql.Tx) error {
				if err := record("m2")(ctx, tx); err != nil {
					return err
				}
				return boom
			}); !errors.Is(err, boom) {
				t.Fatalf("failing handler: %v, want boom", err)
			}
			if ran, err := in.Handle(t.Context(), "m2", record("m2")); !ran || err != nil {
				t.Fatalf("redelivery after failure: ran=%v err=%v", ran, err)
			}
			// IDs compare exactly: no case folding or trailing-space padding.
			for _, id := range []string{"M1", "m1 "} {
				if ran, err := in.Handle(t.Context(), id, record(id)); !ran || err != nil {
					t.Fatalf("id %q: ran=%v err=%v, want a distinct message", id, ran, err)
				}
			}
			// Concurrent deliveries of one message commit once.
			var wg sync.WaitGroup
			var runs atomic.Int32
			for range 8 {
				wg.Go(func() {
					ran, err := in.Handle(t.Context(), "m3", record("m3"))
					if err != nil {
						t.Error(err)
					}
					if ran {
						runs.Add(1)
					}
				})
			}
			wg.Wait()
			for id, want := range map[string]int{"m1": 1, "m2": 1, "m3": 1, "M1": 1} {
				if got := count(id); got != want {
					t.Errorf("message %s committed %d times, want %d", id, got, want)
				}
			}
			if runs.Load() != 1 {
				t.Errorf("%d concurrent deliveries ran, want 1", runs.Load())
			}
			// Bad input.
			for _, id := range []string{"", strings.Repeat("x", 256)} {
				if _, err := in.Handle(t.Context(), id, record(id)); !errors.Is(err, ErrInvalidMessage) {
					t.Errorf("id of %d bytes: %v, want ErrInvalidMessage", len(id), err)
				}
			}
			if _, err := in.Handle(t.Context(), strconv.Itoa(1), nil); err == nil {
				t.Error("nil fn accepted")
			}
		})
	}
}

func TestNewInboxRejects(t *testing.T) {
	db := openSQLite(t)
	if _, err := NewInbox(db, Dialect(42)); err == nil {
		t.Error("unknown dialect accepted")
	}
	if _, err := NewInbox(db, SQLite, WithInboxTable("x; DROP TABLE y")); err == nil {
		t.Error("bad table name accepted")
	}
	if _, err := NewInbox(nil, SQLite); err == nil {
		t.Error("nil db accepted")
	}
}
