package twophase

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
)

// fixture is a Store next to a one-row stock table, with business
// functions that count how often they run.
type fixture struct {
	t     *testing.T
	db    *sql.DB
	d     participant.Dialect
	s     *Store
	stock string // the business table

	checks, applies, undos atomic.Int32
}

type opener func(t *testing.T) (*sql.DB, participant.Dialect)

func openSQLite(t *testing.T) (*sql.DB, participant.Dialect) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "p.db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, participant.SQLite
}

func openPostgres(t *testing.T) (*sql.DB, participant.Dialect) {
	return testenv.Postgres(t), participant.Postgres
}

func openMariaDB(t *testing.T) (*sql.DB, participant.Dialect) {
	return testenv.MariaDB(t), participant.MySQL
}

func newFixture(t *testing.T, open opener) *fixture {
	t.Helper()
	db, d := open(t)
	f := &fixture{t: t, db: db, d: d, stock: testenv.UniqueName(t, "tp_stock")}
	table := testenv.UniqueName(t, "tp_2pc")
	s, err := New(db, d, WithTable(table))
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	if err := s.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.exec(t.Context(), nil, `CREATE TABLE `+f.stock+` (sku VARCHAR(32) PRIMARY KEY, qty INTEGER NOT NULL, reserved INTEGER NOT NULL)`)
	f.exec(t.Context(), nil, `INSERT INTO `+f.stock+` (sku, qty, reserved) VALUES ('shirt', 10, 0)`)
	t.Cleanup(func() {
		ctx := context.Background()
		db.ExecContext(ctx, "DROP TABLE "+f.stock)
		db.ExecContext(ctx, "DROP TABLE "+table)
	})
	return f
}

func (f *fixture) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) error {
	q = rebind(f.d, q)
	var err error
	if tx != nil {
		_, err = tx.ExecContext(ctx, q, args...)
	} else if _, err = f.db.ExecContext(ctx, q, args...); err != nil {
		f.t.Fatal(err)
	}
	return err
}

// reserve is the check: take n from qty into reserved, or say no.
func (f *fixture) reserve(n int) CheckFunc {
	return func(ctx context.Context, tx *sql.Tx) error {
		f.checks.Add(1)
		var qty int
		if err := tx.QueryRowContext(ctx, `SELECT qty FROM `+f.stock+` WHERE sku = 'shirt'`).Scan(&qty); err != nil {
			return err
		}
		if qty < n {
			return participant.Reject("stock short: have %d, want %d", qty, n)
		}
		return f.exec(ctx, tx, `UPDATE `+f.stock+` SET qty = qty - ?, reserved = reserved + ? WHERE sku = 'shirt'`, n, n)
	}
}

func (f *fixture) apply(ctx context.Context, tx *sql.Tx, intent []byte) error {
	f.applies.Add(1)
	var n int
	fmt.Sscan(string(intent), &n)
	return f.exec(ctx, tx, `UPDATE `+f.stock+` SET reserved = reserved - ? WHERE sku = 'shirt'`, n)
}

func (f *fixture) undo(ctx context.Context, tx *sql.Tx, intent []byte) error {
	f.undos.Add(1)
	var n int
	fmt.Sscan(string(intent), &n)
	return f.exec(ctx, tx, `UPDATE `+f.stock+` SET qty = qty + ?, reserved = reserved - ? WHERE sku = 'shirt'`, n, n)
}

func (f *fixture) wantStock(qty, reserved int) {
	f.t.Helper()
	var q, r int
	if err := f.db.QueryRowContext(f.t.Context(), `SELECT qty, reserved FROM `+f.stock).Scan(&q, &r); err != nil {
		f.t.Fatal(err)
	}
	if q != qty || r != reserved {
		f.t.Errorf("stock qty=%d reserved=%d, want qty=%d reserved=%d", q, r, qty, reserved)
	}
}

func (f *fixture) wantState(b participant.Branch, want State) {
	f.t.Helper()
	got, err := f.s.State(f.t.Context(), b.GID, b.BranchID)
	if err != nil {
		f.t.Fatal(err)
	}
	if got != want {
		f.t.Errorf("state of %s = %q, want %q", b.GID, got, want)
	}
}

func (f *fixture) wantRuns(checks, applies, undos int32) {
	f.t.Helper()
	if c, a, u := f.checks.Load(), f.applies.Load(), f.undos.Load(); c != checks || a != applies || u != undos {
		f.t.Errorf("runs: check %d, apply %d, undo %d; want %d, %d, %d", c, a, u, checks, applies, undos)
	}
}

var branch = participant.Branch{GID: "g1", BranchID: "inventory", Mode: "2pc"}

func TestSQLite(t *testing.T)   { runSuite(t, openSQLite) }
func TestPostgres(t *testing.T) { runSuite(t, openPostgres) }
func TestMariaDB(t *testing.T)  { runSuite(t, openMariaDB) }

func runSuite(t *testing.T, open opener) {
	t.Run("PrepareCommit", func(t *testing.T) {
		f := newFixture(t, open)
		ctx := t.Context()
		for range 2 { // the second prepare is a repeated delivery
			if err := f.s.Prepare(ctx, branch, f.reserve(3), []byte("3")); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
		}
		f.wantState(branch, StatePrepared)
		f.wantStock(7, 3)
		p, err := f.s.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 1 || p[0].GID != "g1" || p[0].BranchID != "inventory" || string(p[0].Intent) != "3" || p[0].PreparedAt.IsZero() {
			t.Errorf("Pending = %+v, want g1/inventory with intent 3", p)
		}
		for range 2 {
			if err := f.s.Commit(ctx, branch, f.apply); err != nil {
				t.Fatalf("Commit: %v", err)
			}
		}
		f.wantState(branch, StateCommitted)
		f.wantStock(7, 0)
		f.wantRuns(1, 1, 0)
		if err := f.s.Prepare(ctx, branch, f.reserve(3), []byte("3")); err != nil {
			t.Errorf("Prepare after commit = %v, want nil (yes again)", err)
		}
		if err := f.s.Abort(ctx, branch, f.undo); !errors.Is(err, ErrAlreadyCommitted) {
			t.Errorf("Abort after commit = %v, want ErrAlreadyCommitted", err)
		}
		if p, _ := f.s.Pending(ctx); len(p) != 0 {
			t.Errorf("Pending after commit = %+v", p)
		}
		f.wantStock(7, 0)
		f.wantRuns(1, 1, 0)
	})

	t.Run("PrepareAbort", func(t *testing.T) {
		f := newFixture(t, open)
		ctx := t.Context()
		if err := f.s.Prepare(ctx, branch, f.reserve(4), []byte("4")); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		f.wantStock(6, 4)
		for range 2 {
			if err := f.s.Abort(ctx, branch, f.undo); err != nil {
				t.Fatalf("Abort: %v", err)
			}
		}
		f.wantState(branch, StateAborted)
		f.wantStock(10, 0)
		if err := f.s.Commit(ctx, branch, f.apply); !errors.Is(err, ErrNotPrepared) {
			t.Errorf("Commit after abort = %v, want ErrNotPrepared", err)
		}
		if err := f.s.Prepare(ctx, branch, f.reserve(4), []byte("4")); !errors.Is(err, participant.ErrRejected) {
			t.Errorf("Prepare after abort = %v, want ErrRejected", err)
		}
		f.wantStock(10, 0)
		f.wantRuns(1, 0, 1)
	})

	t.Run("Reject", func(t *testing.T) {
		f := newFixture(t, open)
		ctx := t.Context()
		err := f.s.Prepare(ctx, branch, f.reserve(100), []byte("100"))
		if !errors.Is(err, participant.ErrRejected) || !strings.Contains(err.Error(), "stock short: have 10, want 100") {
			t.Fatalf("Prepare(100) = %v, want the rejection", err)
		}
		f.wantState(branch, StateAborted)
		if err := f.s.Prepare(ctx, branch, f.reserve(100), []byte("100")); !errors.Is(err, participant.ErrRejected) {
			t.Errorf("repeated Prepare after no = %v, want ErrRejected", err)
		}
		if err := f.s.Abort(ctx, branch, f.undo); err != nil {
			t.Errorf("Abort after no = %v", err)
		}
		f.wantStock(10, 0)
		f.wantRuns(1, 0, 0)
	})

	t.Run("NullAbortThenPrepare", func(t *testing.T) {
		f := newFixture(t, open)
		ctx := t.Context()
		for range 2 {
			if err := f.s.Abort(ctx, branch, f.undo); err != nil {
				t.Fatalf("null Abort: %v", err)
			}
		}
		f.wantState(branch, StateAborted)
		err := f.s.Prepare(ctx, branch, f.reserve(1), []byte("1"))
		if !errors.Is(err, participant.ErrRejected) {
			t.Fatalf("Prepare after null abort = %v, want ErrRejected", err)
		}
		f.wantStock(10, 0)
		f.wantRuns(0, 0, 0)
	})

	t.Run("CommitNeverPrepared", func(t *testing.T) {
		f := newFixture(t, open)
		err := f.s.Commit(t.Context(), branch, f.apply)
		if !errors.Is(err, ErrNotPrepared) {
			t.Fatalf("Commit = %v, want ErrNotPrepared", err)
		}
		f.wantState(branch, StateNone)
		f.wantRuns(0, 0, 0)
	})

	t.Run("FailuresKeepNothing", func(t *testing.T) {
		f := newFixture(t, open)
		ctx := t.Context()
		boom := errors.New("boom")
		err := f.s.Prepare(ctx, branch, func(ctx context.Context, tx *sql.Tx) error {
			if err := f.reserve(2)(ctx, tx); err != nil {
				return err
			}
			return boom
		}, []byte("2"))
		if !errors.Is(err, boom) {
			t.Fatalf("Prepare = %v, want boom", err)
		}
		f.wantState(branch, StateNone)
		f.wantStock(10, 0)
		ro := func(context.Context, *sql.Tx) error { return participant.ErrReadOnly }
		if err := f.s.Prepare(ctx, branch, ro, nil); !errors.Is(err, participant.ErrReadOnly) {
			t.Errorf("read-only Prepare = %v, want ErrReadOnly", err)
		}
		f.wantState(branch, StateNone)
		// A retry after the failure prepares.
		if err := f.s.Prepare(ctx, branch, f.reserve(2), []byte("2")); err != nil {
			t.Fatalf("retried Prepare: %v", err)
		}
		if err := f.s.Commit(ctx, branch, func(context.Context, *sql.Tx, []byte) error { return boom }); !errors.Is(err, boom) {
			t.Errorf("failing Commit = %v, want boom", err)
		}
		f.wantState(branch, StatePrepared)
		if err := f.s.Commit(ctx, branch, f.apply); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		f.wantStock(8, 0)
		if err := f.s.Prepare(ctx, participant.Branch{GID: "g"}, f.reserve(1), nil); !errors.Is(err, participant.ErrInvalidBranch) {
			t.Errorf("Prepare without branch id = %v, want ErrInvalidBranch", err)
		}
	})

	// Prepare and abort of the same branch race, as when the coordinator
	// aborts while the prepare is still in flight. Whoever wins, the
	// branch ends aborted and the stock as it was.
	t.Run("PrepareRacesAbort", func(t *testing.T) {
		f := newFixture(t, open)
		ctx := t.Context()
		for i := range 10 {
			b := participant.Branch{GID: fmt.Sprintf("race-%d", i), BranchID: "inventory"}
			var wg sync.WaitGroup
			var perr, aerr error
			wg.Go(func() { perr = f.s.Prepare(ctx, b, f.reserve(1), []byte("1")) })
			wg.Go(func() { aerr = f.s.Abort(ctx, b, f.undo) })
			wg.Wait()
			if perr != nil && !errors.Is(perr, participant.ErrRejected) {
				t.Fatalf("Prepare: %v", perr)
			}
			if aerr != nil {
				t.Fatalf("Abort: %v", aerr)
			}
			f.wantState(b, StateAborted)
		}
		f.wantStock(10, 0)
		if f.checks.Load() != f.undos.Load() {
			t.Errorf("%d checks reserved, %d undos released", f.checks.Load(), f.undos.Load())
		}
	})

	t.Run("Handler", func(t *testing.T) {
		f := newFixture(t, open)
		srv := httptest.NewServer(f.s.Handler(Resource{
			Check: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, payload []byte) error {
				var n int
				fmt.Sscan(string(payload), &n)
				return f.reserve(n)(ctx, tx)
			},
			Apply: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
				return f.apply(ctx, tx, intent)
			},
			Undo: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
				return f.undo(ctx, tx, intent)
			},
		}))
		t.Cleanup(srv.Close)
		call := func(gid string, op participant.Op, body string) int {
			t.Helper()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			participant.Branch{GID: gid, BranchID: "inventory", Op: op, Mode: "2pc"}.SetHeaders(req.Header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		for _, c := range []struct {
			gid  string
			op   participant.Op
			body string
			want int
		}{
			{"h1", participant.OpPrepare, "2", http.StatusOK},
			{"h1", participant.OpCommit, "", http.StatusOK},
			{"h1", participant.OpCommit, "", http.StatusOK},
			{"h1", participant.OpAbort, "", http.StatusInternalServerError},  // already committed
			{"h2", participant.OpPrepare, "100", http.StatusConflict},        // vote no
			{"h3", participant.OpCommit, "", http.StatusInternalServerError}, // never prepared
			{"h4", participant.OpAbort, "", http.StatusOK},                   // null abort
			{"h4", participant.OpPrepare, "1", http.StatusConflict},          // refused after it
			{"h5", participant.OpConfirm, "", http.StatusBadRequest},
		} {
			if got := call(c.gid, c.op, c.body); got != c.want {
				t.Errorf("%s %s: HTTP %d, want %d", c.gid, c.op, got, c.want)
			}
		}
		f.wantStock(8, 0)
	})
}

func TestNewRejectsBadArguments(t *testing.T) {
	db, _ := openSQLite(t)
	if _, err := New(nil, participant.SQLite); err == nil {
		t.Error("New(nil db) succeeded")
	}
	if _, err := New(db, participant.Dialect(99)); err == nil {
		t.Error("New(unknown dialect) succeeded")
	}
	if _, err := New(db, participant.SQLite, WithTable("x; DROP TABLE y")); err == nil {
		t.Error("New(bad table name) succeeded")
	}
}

func TestRebind(t *testing.T) {
	q := "UPDATE t SET a = ? WHERE b = ? AND c = ?"
	if got, want := rebind(participant.Postgres, q), "UPDATE t SET a = $1 WHERE b = $2 AND c = $3"; got != want {
		t.Errorf("rebind = %q, want %q", got, want)
	}
	if got := rebind(participant.MySQL, q); got != q {
		t.Errorf("rebind(mysql) = %q", got)
	}
}
