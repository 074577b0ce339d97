package participant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/concordtm/concord/internal/testenv"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// backend is one database the barrier is tested against.
type backend struct {
	name    string
	dialect Dialect
	open    func(t *testing.T) *sql.DB
	// lockWaits counts transactions blocked on a row lock while running a
	// statement that mentions table; nil where that cannot be observed.
	lockWaits func(ctx context.Context, db *sql.DB, table string) (int, error)
}

var backends = []backend{
	{name: "sqlite", dialect: SQLite, open: openSQLite},
	{name: "postgres", dialect: Postgres, open: func(t *testing.T) *sql.DB { return testenv.Postgres(t) },
		lockWaits: func(ctx context.Context, db *sql.DB, table string) (n int, err error) {
			err = db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE wait_event_type = 'Lock' AND position($1 in query) > 0`, table).Scan(&n)
			return n, err
		}},
	{name: "mariadb", dialect: MySQL, open: func(t *testing.T) *sql.DB { return testenv.MariaDB(t) },
		// INFORMATION_SCHEMA.INNODB_TRX is a cache that InnoDB refreshes only
		// after 100ms without readers, so a tight poll would never see the
		// wait; the status counter is live. It counts waits server-wide,
		// which can only make the test release early, not fail.
		lockWaits: func(ctx context.Context, db *sql.DB, _ string) (n int, err error) {
			var name string
			err = db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Innodb_row_lock_current_waits'").Scan(&name, &n)
			return n, err
		}},
}

// openSQLite opens a fresh SQLite file configured for concurrent writers:
// WAL, a busy timeout, and BEGIN IMMEDIATE so writers queue up front.
func openSQLite(t *testing.T) *sql.DB {
	path := filepath.Join(t.TempDir(), "barrier.db")
	db, err := sql.Open("sqlite", "file:"+path+
		"?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fixture is a barrier on its own table plus a ledger table in which the
// business function writes one row per run, so tests can count runs that
// committed.
type fixture struct {
	be     backend
	db     *sql.DB
	br     *Barrier
	table  string
	ledger string
}

// forEachBackend runs test against every backend, in parallel.
func forEachBackend(t *testing.T, test func(t *testing.T, f *fixture)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			test(t, newFixture(t, be))
		})
	}
}

func newFixture(t *testing.T, be backend) *fixture {
	t.Helper()
	db := be.open(t)
	table := testenv.UniqueName(t, "cbt")
	f := &fixture{be: be, db: db, table: table, ledger: table + "_ledger"}
	br, err := NewBarrier(db, be.dialect, WithBarrierTable(table))
	if err != nil {
		t.Fatal(err)
	}
	f.br = br
	t.Cleanup(func() {
		for _, tbl := range []string{f.table, f.ledger} {
			if _, err := db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+tbl); err != nil {
				t.Errorf("drop %s: %v", tbl, err)
			}
		}
	})
	for range 2 { // CreateTable is idempotent
		if err := br.CreateTable(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE "+f.ledger+
		" (gid VARCHAR(128) NOT NULL, branch_id VARCHAR(128) NOT NULL, op VARCHAR(16) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return f
}

// record is the business function of the tests: it appends b to the ledger.
func (f *fixture) record(b Branch) func(ctx context.Context, tx *sql.Tx) error {
	d := f.be.dialect
	q := fmt.Sprintf("INSERT INTO %s (gid, branch_id, op) VALUES (%s, %s, %s)",
		f.ledger, d.placeholder(1), d.placeholder(2), d.placeholder(3))
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, b.GID, b.BranchID, string(b.Op))
		return err
	}
}

// do delivers b with the recording business function.
func (f *fixture) do(t *testing.T, b Branch) error {
	return f.br.Do(t.Context(), b, f.record(b))
}

// runs returns how many committed runs of b's operation the ledger holds.
func (f *fixture) runs(t *testing.T, b Branch) int {
	t.Helper()
	d := f.be.dialect
	var n int
	err := f.db.QueryRowContext(t.Context(), fmt.Sprintf(
		"SELECT COUNT(*) FROM %s WHERE gid = %s AND branch_id = %s AND op = %s",
		f.ledger, d.placeholder(1), d.placeholder(2), d.placeholder(3)),
		b.GID, b.BranchID, string(b.Op)).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// barrierRows returns the barrier rows of gid as "op:reason", sorted by op.
func (f *fixture) barrierRows(t *testing.T, gid string) []string {
	t.Helper()
	rows, err := f.db.QueryContext(t.Context(), "SELECT op, reason FROM "+f.table+
		" WHERE gid = "+f.be.dialect.placeholder(1)+" ORDER BY op", gid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var op, reason string
		if err := rows.Scan(&op, &reason); err != nil {
			t.Fatal(err)
		}
		out = append(out, op+":"+reason)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) wantRuns(t *testing.T, b Branch, want int) {
	t.Helper()
	if got := f.runs(t, b); got != want {
		t.Errorf("%s ran %d times, want %d", describe(b), got, want)
	}
}

// pairs are the forward/backward operation pairs of saga and TCC.
var pairs = []struct{ mode, forward, backward Op }{
	{"saga", OpAction, OpCompensate},
	{"tcc", OpTry, OpCancel},
}

func branch(gid string, op Op) Branch { return Branch{GID: gid, BranchID: "b1", Op: op} }

func TestBarrierIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		for _, p := range pairs {
			gid := "idem-" + string(p.mode)
			for range 3 {
				if err := f.do(t, branch(gid, p.forward)); err != nil {
					t.Fatalf("%s: %v", p.forward, err)
				}
			}
			f.wantRuns(t, branch(gid, p.forward), 1)
			for range 3 {
				if err := f.do(t, branch(gid, p.backward)); err != nil {
					t.Fatalf("%s: %v", p.backward, err)
				}
			}
			f.wantRuns(t, branch(gid, p.backward), 1)
			// A forward call delivered late, after it ran and was undone,
			// is a duplicate: nothing runs and the answer is success.
			if err := f.do(t, branch(gid, p.forward)); err != nil {
				t.Fatalf("late duplicate %s: %v", p.forward, err)
			}
			f.wantRuns(t, branch(gid, p.forward), 1)
			want := []string{string(p.forward) + ":" + string(p.forward), string(p.backward) + ":" + string(p.backward)}
			if p.forward > p.backward {
				want[0], want[1] = want[1], want[0]
			}
			if got := f.barrierRows(t, gid); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("barrier rows = %v, want %v", got, want)
			}
		}
		// The same operation on another branch of the same gid is distinct.
		other := Branch{GID: "idem-saga", BranchID: "b2", Op: OpAction}
		if err := f.do(t, other); err != nil {
			t.Fatal(err)
		}
		f.wantRuns(t, other, 1)
	})
}

func TestBarrierNullCompensationAndHanging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		for _, p := range pairs {
			gid := "null-" + string(p.mode)
			for range 2 {
				if err := f.do(t, branch(gid, p.backward)); err != nil {
					t.Fatalf("null %s: %v", p.backward, err)
				}
			}
			f.wantRuns(t, branch(gid, p.backward), 0)
			for range 2 {
				err := f.do(t, branch(gid, p.forward))
				if !errors.Is(err, ErrRejected) {
					t.Fatalf("hanging %s: got %v, want ErrRejected", p.forward, err)
				}
				if !strings.Contains(err.Error(), "hanging") {
					t.Errorf("hanging %s: error %q does not say why", p.forward, err)
				}
			}
			f.wantRuns(t, branch(gid, p.forward), 0)
			got := f.barrierRows(t, gid)
			want := []string{string(p.forward) + ":" + string(p.backward), string(p.backward) + ":" + string(p.backward)}
			if p.forward > p.backward {
				want[0], want[1] = want[1], want[0]
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("barrier rows = %v, want %v", got, want)
			}
		}
	})
}

var errBoom = errors.New("boom")

func TestBarrierFnErrorRollsBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		for _, p := range pairs {
			gid := "fail-" + string(p.mode)
			for _, op := range []Op{p.forward, p.backward} {
				b := branch(gid, op)
				failing := func(ctx context.Context, tx *sql.Tx) error {
					if err := f.record(b)(ctx, tx); err != nil {
						return err
					}
					return fmt.Errorf("business: %w", errBoom)
				}
				if err := f.br.Do(t.Context(), b, failing); !errors.Is(err, errBoom) {
					t.Fatalf("%s: got %v, want errBoom", op, err)
				}
				f.wantRuns(t, b, 0)
				// The retry must run: nothing of the failed attempt survived.
				if err := f.do(t, b); err != nil {
					t.Fatalf("%s retry: %v", op, err)
				}
				f.wantRuns(t, b, 1)
			}
		}
		// A failed compensation must not turn into a null compensation:
		// after the retry, the barrier still knows the action ran.
		if got := f.barrierRows(t, "fail-saga"); fmt.Sprint(got) != "[action:action compensate:compensate]" {
			t.Errorf("barrier rows = %v", got)
		}
	})
}

func TestBarrierFnPanicRollsBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		b := branch("panic", OpAction)
		func() {
			defer func() {
				if r := recover(); r != errBoom {
					t.Errorf("recovered %v, want errBoom", r)
				}
			}()
			_ = f.br.Do(t.Context(), b, func(ctx context.Context, tx *sql.Tx) error {
				if err := f.record(b)(ctx, tx); err != nil {
					return err
				}
				panic(errBoom)
			})
		}()
		if err := f.do(t, b); err != nil {
			t.Fatal(err)
		}
		f.wantRuns(t, b, 1)
	})
}

func TestBarrierConfirmIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		if err := f.do(t, branch("confirm", OpTry)); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := f.do(t, branch("confirm", OpConfirm)); err != nil {
				t.Fatal(err)
			}
		}
		f.wantRuns(t, branch("confirm", OpConfirm), 1)
	})
}

// TestBarrierConcurrentDuplicates delivers the same operation from many
// goroutines at once: fn must commit exactly once and every call succeed.
func TestBarrierConcurrentDuplicates(t *testing.T) {
	const callers = 8
	forEachBackend(t, func(t *testing.T, f *fixture) {
		for _, p := range pairs {
			gid := "dup-" + string(p.mode)
			for _, op := range []Op{p.forward, p.backward} {
				b := branch(gid, op)
				var calls atomic.Int32
				fn := func(ctx context.Context, tx *sql.Tx) error {
					calls.Add(1)
					return f.record(b)(ctx, tx)
				}
				start := make(chan struct{})
				errs := make(chan error, callers)
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						<-start
						errs <- f.br.Do(t.Context(), b, fn)
					})
				}
				close(start)
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Errorf("%s: %v", op, err)
					}
				}
				if n := calls.Load(); n != 1 {
					t.Errorf("%s: fn called %d times, want 1", op, n)
				}
				f.wantRuns(t, b, 1)
			}
		}
	})
}

// checkRace checks the outcome of one action racing its compensation: either
// the action applied and the compensation undid it, or the compensation was
// null and the action was refused. It returns which.
func checkRace(t *testing.T, f *fixture, gid string, actErr, compErr error) (applied bool) {
	t.Helper()
	act, comp := branch(gid, OpAction), branch(gid, OpCompensate)
	if compErr != nil {
		t.Fatalf("%s: compensation failed: %v", gid, compErr)
	}
	switch {
	case actErr == nil:
		f.wantRuns(t, act, 1)
		f.wantRuns(t, comp, 1)
		return true
	case errors.Is(actErr, ErrRejected):
		f.wantRuns(t, act, 0)
		f.wantRuns(t, comp, 0)
		return false
	default:
		t.Fatalf("%s: action failed: %v", gid, actErr)
		return false
	}
}

// TestBarrierActionRacesCompensation starts an action and its compensation at
// the same moment, many times; every round must end consistently.
func TestBarrierActionRacesCompensation(t *testing.T) {
	const rounds = 40
	forEachBackend(t, func(t *testing.T, f *fixture) {
		applied := 0
		for i := range rounds {
			gid := fmt.Sprintf("race-%d", i)
			var actErr, compErr error
			start := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() { <-start; actErr = f.do(t, branch(gid, OpAction)) })
			wg.Go(func() { <-start; compErr = f.do(t, branch(gid, OpCompensate)) })
			close(start)
			wg.Wait()
			if checkRace(t, f, gid, actErr, compErr) {
				applied++
			}
		}
		t.Logf("%d of %d rounds: action applied then compensated; others: null compensation, action refused", applied, rounds)
	})
}

// TestBarrierCompensationWaitsForAction holds an action's transaction open
// while its compensation arrives: the compensation must wait for the action's
// outcome. If the action commits, the compensation undoes it; if it rolls
// back, the compensation is null and a redelivered action is refused.
func TestBarrierCompensationWaitsForAction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		for _, actionFails := range []bool{false, true} {
			gid := fmt.Sprintf("wait-%t", actionFails)
			act, comp := branch(gid, OpAction), branch(gid, OpCompensate)
			inFn, release := make(chan struct{}), make(chan struct{})
			actDone := make(chan error, 1)
			go func() {
				actDone <- f.br.Do(t.Context(), act, func(ctx context.Context, tx *sql.Tx) error {
					if err := f.record(act)(ctx, tx); err != nil {
						return err
					}
					close(inFn)
					<-release
					if actionFails {
						return errBoom
					}
					return nil
				})
			}()
			<-inFn
			compDone := make(chan error, 1)
			go func() { compDone <- f.do(t, comp) }()
			err := f.awaitLockWait(t, compDone)
			close(release)
			if err != nil {
				t.Fatal(err)
			}
			actErr, compErr := <-actDone, <-compDone
			if actionFails {
				if !errors.Is(actErr, errBoom) {
					t.Fatalf("action: got %v, want errBoom", actErr)
				}
				if compErr != nil {
					t.Fatalf("compensation: %v", compErr)
				}
				f.wantRuns(t, comp, 0) // null compensation
				actErr = f.do(t, act)  // the coordinator's retry, too late
			}
			if applied := checkRace(t, f, gid, actErr, compErr); applied == actionFails {
				t.Errorf("actionFails=%t: applied=%t", actionFails, applied)
			}
		}
	})
}

// awaitLockWait returns once a transaction waits on a row lock of the
// barrier table, where the backend lets us observe that. SQLite's waiters
// sit in the busy handler, invisible; the test stays correct, only the
// interleaving is then not guaranteed. It fails if the compensation, which
// must be the waiter, returns first.
func (f *fixture) awaitLockWait(t *testing.T, compDone <-chan error) error {
	t.Helper()
	if f.be.lockWaits == nil {
		return nil
	}
	for {
		select {
		case err := <-compDone:
			return fmt.Errorf("compensation returned (%v) while its action was in flight", err)
		default:
		}
		n, err := f.be.lockWaits(t.Context(), f.db, f.table)
		if err != nil {
			return fmt.Errorf("observing lock waits: %w", err)
		}
		if n > 0 {
			return nil
		}
	}
}

func TestBarrierValidation(t *testing.T) {
	f := newFixture(t, backends[0])
	called := false
	fn := func(context.Context, *sql.Tx) error { called = true; return nil }
	long := strings.Repeat("x", maxIDLen+1)
	for _, b := range []Branch{
		{BranchID: "b", Op: OpAction},
		{GID: "g", Op: OpAction},
		{GID: "g", BranchID: "b"},
		{GID: "g", BranchID: "b", Op: "rollback"},
		{GID: long, BranchID: "b", Op: OpAction},
		{GID: "g", BranchID: long, Op: OpAction},
	} {
		if err := f.br.Do(t.Context(), b, fn); !errors.Is(err, ErrInvalidBranch) {
			t.Errorf("Do(%+v) = %v, want ErrInvalidBranch", b, err)
		}
	}
	if called {
		t.Error("fn ran for an invalid branch")
	}
	if err := f.br.Do(t.Context(), branch("g", OpAction), nil); err == nil {
		t.Error("Do with nil fn succeeded")
	}
	if f.barrierRows(t, "g") != nil {
		t.Error("invalid calls left barrier rows")
	}
}

func TestNewBarrier(t *testing.T) {
	db := openSQLite(t)
	b, err := NewBarrier(db, SQLite)
	if err != nil || b.table != DefaultBarrierTable {
		t.Fatalf("NewBarrier = %v, %v; want table %s", b, err, DefaultBarrierTable)
	}
	if _, err := NewBarrier(db, SQLite, WithBarrierTable("billing.barrier_v2")); err != nil {
		t.Errorf("schema-qualified table: %v", err)
	}
	for _, name := range []string{"", "1table", "barrier; DROP TABLE x", `"quoted"`, "a.b.c", strings.Repeat("t", 121)} {
		if _, err := NewBarrier(db, SQLite, WithBarrierTable(name)); err == nil {
			t.Errorf("NewBarrier accepted table name %q", name)
		}
	}
	if _, err := NewBarrier(nil, SQLite); err == nil {
		t.Error("NewBarrier accepted a nil db")
	}
	if _, err := NewBarrier(db, Dialect(0)); err == nil {
		t.Error("NewBarrier accepted dialect 0")
	}
}

// A service that forgot Barrier.CreateTable gets an error that says so, on
// every backend (it answers 500, and the coordinator's history shows it),
// and fn does not run.
func TestBarrierMissingTable(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			db := be.open(t)
			table := testenv.UniqueName(t, "cbt_missing")
			br, err := NewBarrier(db, be.dialect, WithBarrierTable(table))
			if err != nil {
				t.Fatal(err)
			}
			ran := false
			err = br.Do(t.Context(), branch("g-missing", OpAction), func(context.Context, *sql.Tx) error { ran = true; return nil })
			if !errors.Is(err, ErrNoBarrierTable) || !strings.Contains(err.Error(), "CreateTable") || !strings.Contains(err.Error(), table) || ran {
				t.Fatalf("Do without the table: %v (fn ran: %v); want ErrNoBarrierTable naming %s and CreateTable", err, ran, table)
			}
		})
	}
}
