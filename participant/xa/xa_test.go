package xa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
)

// backend is one real database the package is tested against.
type backend struct {
	name    string
	dialect Dialect
	open    func(t testing.TB) *sql.DB
}

// backends: databases of the test binary's own (the package's tables have
// fixed names; another package's leftover prepared branch must not lock
// them), PostgreSQL with prepared transactions enabled.
var backends = []backend{
	{name: "postgres", dialect: Postgres, open: testenv.PostgresXA},
	{name: "mariadb", dialect: MySQL, open: testenv.MariaDBXA},
}

// TestMain removes the databases (and the private PostgreSQL server, if
// one was started) after the tests.
func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is one test's view of a backend: a pool, a business table of its
// own, and the branches it created (rolled back at cleanup if still
// prepared, so that no prepared transaction outlives the test and blocks
// others).
type fixture struct {
	t     *testing.T
	ctx   context.Context
	be    backend
	d     Dialect
	db    *sql.DB
	table string
}

// testTimeout bounds every test.
const testTimeout = 10 * time.Second

func setup(t *testing.T, be backend) *fixture {
	t.Helper()
	db := be.open(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	if err := CreateTable(ctx, db, be.dialect); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ctx: ctx, be: be, d: be.dialect, db: db, table: testenv.UniqueName(t, "xa_acct")}
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+f.table+" (id INT PRIMARY KEY, v INT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Runs after the branches' cleanups (registered later), so no
		// prepared transaction holds a lock on the table any more.
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP TABLE "+f.table); err != nil {
			t.Errorf("drop %s: %v", f.table, err)
		}
	})
	return f
}

// branch returns a branch with a gid no other test uses, and rolls back its
// prepared transaction, if any, when the test ends.
func (f *fixture) branch(id string) participant.Branch {
	return f.branchWithGID(testenv.UniqueName(f.t, "xa"), id)
}

func (f *fixture) branchWithGID(gid, id string) participant.Branch {
	b := participant.Branch{GID: gid, BranchID: id, Mode: "2pc"}
	db, d := f.db, f.d
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		stmt := "ROLLBACK PREPARED '" + XID(b.GID, b.BranchID) + "'"
		if d == MySQL {
			stmt = "XA ROLLBACK '" + XID(b.GID, b.BranchID) + "'"
			// A branch this process prepared is still held by its session.
			if endOnHeldSession(ctx, XID(b.GID, b.BranchID), stmt) {
				f.t.Logf("cleanup rolled back a leftover prepared branch %s", describe(b))
				return
			}
		}
		if _, err := db.ExecContext(ctx, stmt); err == nil {
			f.t.Logf("cleanup rolled back a leftover prepared branch %s", describe(b))
		}
	})
	return b
}

// insert returns work that inserts row (id, v) into the fixture's table.
func (f *fixture) insert(id, v int, calls *atomic.Int32) func(ctx context.Context, conn *sql.Conn) error {
	return func(ctx context.Context, conn *sql.Conn) error {
		if calls != nil {
			calls.Add(1)
		}
		_, err := conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, %d)", f.table, id, v))
		return err
	}
}

// rows counts the committed rows of the table, read through observer, a
// pool of its own (another session than any Prepare used).
func (f *fixture) rows(observer *sql.DB) int {
	f.t.Helper()
	var n int
	if err := observer.QueryRowContext(f.ctx, "SELECT COUNT(*) FROM "+f.table).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// prepared reports whether b's XID is prepared.
func (f *fixture) prepared(b participant.Branch) bool {
	f.t.Helper()
	ok, err := isPrepared(f.ctx, f.db, f.d, XID(b.GID, b.BranchID))
	if err != nil {
		f.t.Fatal(err)
	}
	return ok
}

func (f *fixture) markers(b participant.Branch) int {
	f.t.Helper()
	var n int
	if err := f.db.QueryRowContext(f.ctx, f.d.countSQL(MarkerTable), b.GID, b.BranchID).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func forEach(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { fn(t, setup(t, be)) })
	}
}

func TestPrepareCommit(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		observer := f.be.open(t)
		b := f.branch("b1")
		var calls atomic.Int32
		if err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 10, &calls)); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if n := f.rows(observer); n != 0 {
			t.Fatalf("%d rows visible before commit, want 0", n)
		}
		if !f.prepared(b) {
			t.Fatal("branch not listed as prepared")
		}
		// A repeated prepare votes yes again without running work.
		if err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 10, &calls)); err != nil {
			t.Fatalf("repeated Prepare: %v", err)
		}
		if c := calls.Load(); c != 1 {
			t.Fatalf("work ran %d times, want 1", c)
		}
		if err := Commit(f.ctx, f.db, f.d, b); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if n := f.rows(observer); n != 1 {
			t.Fatalf("%d rows after commit, want 1", n)
		}
		if err := Commit(f.ctx, f.db, f.d, b); err != nil {
			t.Fatalf("repeated Commit: %v", err)
		}
		if err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 10, &calls)); err != nil {
			t.Fatalf("Prepare after commit: %v", err)
		}
		if c := calls.Load(); c != 1 {
			t.Fatalf("work ran %d times, want 1", c)
		}
		if err := Abort(f.ctx, f.db, f.d, b); !errors.Is(err, ErrAlreadyCommitted) {
			t.Fatalf("Abort after commit = %v, want ErrAlreadyCommitted", err)
		}
		if f.prepared(b) || f.rows(observer) != 1 {
			t.Fatal("commit undone")
		}
	})
}

func TestPrepareAbort(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		b := f.branch("b1")
		if err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 10, nil)); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		for i := range 2 {
			if err := Abort(f.ctx, f.db, f.d, b); err != nil {
				t.Fatalf("Abort #%d: %v", i+1, err)
			}
		}
		if f.prepared(b) || f.rows(f.db) != 0 || f.markers(b) != 0 {
			t.Fatal("abort left something behind")
		}
		var calls atomic.Int32
		if err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 10, &calls)); !errors.Is(err, participant.ErrRejected) || calls.Load() != 0 {
			t.Fatalf("Prepare after abort = %v (work ran %d times), want ErrRejected without work", err, calls.Load())
		}
		if err := Commit(f.ctx, f.db, f.d, b); !errors.Is(err, ErrNotPrepared) {
			t.Fatalf("Commit after abort = %v, want ErrNotPrepared", err)
		}
	})
}

func TestWorkFails(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		b := f.branch("b1")
		reject := func(ctx context.Context, conn *sql.Conn) error {
			if err := f.insert(1, 10, nil)(ctx, conn); err != nil {
				return err
			}
			return participant.Reject("insufficient funds")
		}
		if err := Prepare(f.ctx, f.db, f.d, b, reject); !errors.Is(err, participant.ErrRejected) {
			t.Fatalf("Prepare = %v, want ErrRejected", err)
		}
		if f.prepared(b) || f.rows(f.db) != 0 || f.markers(b) != 0 {
			t.Fatal("a rejected prepare left something behind")
		}
		// A failure that is not a "no" leaves nothing either, and a retry
		// runs work again.
		boom := errors.New("boom")
		if err := Prepare(f.ctx, f.db, f.d, b, func(context.Context, *sql.Conn) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("Prepare = %v, want boom", err)
		}
		// SQL errors too (a duplicate key inside work).
		if _, err := f.db.ExecContext(f.ctx, "INSERT INTO "+f.table+" (id, v) VALUES (2, 0)"); err != nil {
			t.Fatal(err)
		}
		if err := Prepare(f.ctx, f.db, f.d, b, f.insert(2, 10, nil)); err == nil {
			t.Fatal("Prepare with a failing statement succeeded")
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("panic in work did not propagate")
				}
			}()
			_ = Prepare(f.ctx, f.db, f.d, b, func(context.Context, *sql.Conn) error { panic("work panics") })
		}()
		if f.prepared(b) || f.markers(b) != 0 {
			t.Fatal("a failed prepare left something behind")
		}
		if err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 10, nil)); err != nil {
			t.Fatalf("retry: %v", err)
		}
		if err := Commit(f.ctx, f.db, f.d, b); err != nil {
			t.Fatal(err)
		}
		if n := f.rows(f.db); n != 2 {
			t.Fatalf("%d rows, want 2", n)
		}
	})
}

func TestCommitNeverPrepared(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		b := f.branch("b1")
		if err := Commit(f.ctx, f.db, f.d, b); !errors.Is(err, ErrNotPrepared) {
			t.Fatalf("Commit = %v, want ErrNotPrepared", err)
		}
	})
}

func TestAbortBeforePrepare(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		b := f.branch("b1")
		if err := Abort(f.ctx, f.db, f.d, b); err != nil {
			t.Fatalf("null Abort: %v", err)
		}
		var calls atomic.Int32
		err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 10, &calls))
		if !errors.Is(err, participant.ErrRejected) {
			t.Fatalf("late Prepare = %v, want ErrRejected", err)
		}
		if calls.Load() != 0 || f.prepared(b) || f.rows(f.db) != 0 {
			t.Fatal("late prepare ran or left something behind")
		}
	})
}

// TestCommitAfterSessionDeath prepares on a pool that is then closed, as
// when the participant process dies between its vote and the decision, and
// commits from a fresh pool.
func TestCommitAfterSessionDeath(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		for i, commit := range []bool{true, false} {
			dying := f.be.open(t)
			b := f.branch(fmt.Sprintf("commit-%v", commit))
			if err := Prepare(f.ctx, dying, f.d, b, f.insert(i, 10, nil)); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if err := dying.Close(); err != nil {
				t.Fatal(err)
			}
			fresh := f.be.open(t)
			if !f.prepared(b) {
				t.Fatal("the prepared branch died with its session")
			}
			want := 1 // the first round's commit
			if commit {
				if err := Commit(f.ctx, fresh, f.d, b); err != nil {
					t.Fatalf("Commit from a fresh session: %v", err)
				}
			} else if err := Abort(f.ctx, fresh, f.d, b); err != nil {
				t.Fatalf("Abort from a fresh session: %v", err)
			}
			if n := f.rows(fresh); n != want {
				t.Fatalf("%d rows, want %d", n, want)
			}
		}
	})
}

func TestRecover(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		gid := testenv.UniqueName(t, "xa")
		long := gid + "-" + strings.Repeat("long", 15) // hashed XID
		p1, p2, p3 := f.branchWithGID(gid, "p1"), f.branchWithGID(gid, "p2"), f.branchWithGID(long, "p3")
		committed, aborted := f.branchWithGID(gid, "c"), f.branchWithGID(gid, "a")
		for i, b := range []participant.Branch{p1, p2, p3, committed, aborted} {
			if err := Prepare(f.ctx, f.db, f.d, b, f.insert(i, 0, nil)); err != nil {
				t.Fatalf("Prepare %s: %v", describe(b), err)
			}
		}
		if !hashed(XID(p3.GID, p3.BranchID)) {
			t.Fatal("p3 should have a hashed XID")
		}
		if err := Commit(f.ctx, f.db, f.d, committed); err != nil {
			t.Fatal(err)
		}
		if err := Abort(f.ctx, f.db, f.d, aborted); err != nil {
			t.Fatal(err)
		}
		list, err := Recover(f.ctx, f.db, f.d)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]Prepared{}
		for _, p := range list {
			if strings.HasPrefix(p.GID, gid) { // other tests' branches may be listed too
				got[p.GID+"/"+p.BranchID] = p
			}
		}
		want := []participant.Branch{p1, p2, p3}
		if len(got) != len(want) {
			t.Fatalf("Recover listed %v, want exactly %s, %s, %s", got, describe(p1), describe(p2), describe(p3))
		}
		for _, b := range want {
			p, ok := got[describe(b)]
			if !ok {
				t.Fatalf("Recover did not list %s: %v", describe(b), got)
			}
			if p.XID != XID(b.GID, b.BranchID) {
				t.Errorf("%s: XID %q, want %q", describe(b), p.XID, XID(b.GID, b.BranchID))
			}
			if f.d == Postgres && p.PreparedAt.IsZero() {
				t.Errorf("%s: no PreparedAt", describe(b))
			}
		}
		// What an orphan scan does with them.
		for _, p := range list {
			if strings.HasPrefix(p.GID, gid) {
				if err := Abort(f.ctx, f.db, f.d, participant.Branch{GID: p.GID, BranchID: p.BranchID}); err != nil {
					t.Fatal(err)
				}
			}
		}
		list, err = Recover(f.ctx, f.db, f.d)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list {
			if strings.HasPrefix(p.GID, gid) {
				t.Errorf("%s still listed after abort", p.XID)
			}
		}
	})
}

// TestDuplicatePrepareInProgress delivers a prepare again while the first
// delivery is still running its work.
func TestDuplicatePrepareInProgress(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		b := f.branch("b1")
		inWork, release := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			first <- Prepare(f.ctx, f.db, f.d, b, func(ctx context.Context, conn *sql.Conn) error {
				close(inWork)
				<-release
				return f.insert(1, 10, nil)(ctx, conn)
			})
		}()
		<-inWork
		var calls atomic.Int32
		err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 10, &calls))
		close(release)
		if !errors.Is(err, ErrInProgress) || calls.Load() != 0 {
			t.Errorf("duplicate Prepare = %v (work ran %d times), want ErrInProgress", err, calls.Load())
		}
		if err := <-first; err != nil {
			t.Fatalf("first Prepare: %v", err)
		}
		if err := Commit(f.ctx, f.db, f.d, b); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAbortWaitsForPrepare aborts a branch whose prepare is running its
// work: the prepare read no abort, so it prepares, and Abort, which waits
// for it, then rolls it back.
func TestAbortWaitsForPrepare(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		b := f.branch("b1")
		inWork, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		testHookWaits = func() { once.Do(func() { close(release) }) }
		t.Cleanup(func() { testHookWaits = nil })

		prepared := make(chan error, 1)
		go func() {
			prepared <- Prepare(f.ctx, f.db, f.d, b, func(ctx context.Context, conn *sql.Conn) error {
				close(inWork)
				select { // until Abort has found the branch busy
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				return f.insert(1, 10, nil)(ctx, conn)
			})
		}()
		<-inWork
		if err := Abort(f.ctx, f.db, f.d, b); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		select {
		case <-release:
		default:
			t.Fatal("Abort returned without waiting for the prepare in progress")
		}
		if err := <-prepared; err != nil {
			t.Fatalf("Prepare: %v (it read the abort check before Abort recorded)", err)
		}
		if f.prepared(b) || f.rows(f.db) != 0 {
			t.Fatal("Abort returned while the branch was (or became) prepared")
		}
		if err := Commit(f.ctx, f.db, f.d, b); !errors.Is(err, ErrNotPrepared) {
			t.Fatalf("Commit = %v, want ErrNotPrepared", err)
		}
	})
}

// TestPrepareAbortRace runs prepares and aborts of the same branches
// concurrently, without steering: whoever wins, the branch must end with
// nothing prepared and nothing applied, and a prepare that reported a yes
// must be one that Abort rolled back.
func TestPrepareAbortRace(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		const rounds = 12
		gid := testenv.UniqueName(t, "xa")
		for i := range rounds {
			b := f.branchWithGID(gid, fmt.Sprintf("r%d", i))
			var wg sync.WaitGroup
			var perr, aerr error
			start := make(chan struct{})
			wg.Go(func() {
				<-start
				perr = Prepare(f.ctx, f.db, f.d, b, f.insert(i, 0, nil))
			})
			wg.Go(func() {
				<-start
				aerr = Abort(f.ctx, f.db, f.d, b)
			})
			close(start)
			wg.Wait()
			if aerr != nil {
				t.Fatalf("round %d: Abort: %v", i, aerr)
			}
			if perr != nil && !errors.Is(perr, participant.ErrRejected) {
				t.Fatalf("round %d: Prepare: %v", i, perr)
			}
			if f.prepared(b) {
				t.Fatalf("round %d: branch still prepared after Abort returned (prepare: %v)", i, perr)
			}
			if err := Prepare(f.ctx, f.db, f.d, b, f.insert(i, 0, nil)); !errors.Is(err, participant.ErrRejected) {
				t.Fatalf("round %d: Prepare after the race = %v, want ErrRejected", i, err)
			}
		}
		if n := f.rows(f.db); n != 0 {
			t.Fatalf("%d rows applied, want 0", n)
		}
	})
}

func TestInvalidBranch(t *testing.T) {
	f := &fixture{d: Postgres}
	db := &sql.DB{} // never used: the branch is checked first
	for _, b := range []participant.Branch{
		{GID: "", BranchID: "b"},
		{GID: "g", BranchID: ""},
		{GID: strings.Repeat("g", 129), BranchID: "b"},
	} {
		if err := Commit(context.Background(), db, f.d, b); !errors.Is(err, participant.ErrInvalidBranch) {
			t.Errorf("Commit(%q, %q) = %v, want ErrInvalidBranch", b.GID, b.BranchID, err)
		}
	}
	if err := Commit(context.Background(), db, Dialect(9), participant.Branch{GID: "g", BranchID: "b"}); err == nil {
		t.Error("unknown dialect accepted")
	}
}

// TestPrepareOutlastsProbe holds a branch's advisory lock on another
// session for a moment, as Abort's probe does, while Prepare starts: the
// Prepare must wait the moment out and prepare, not report the branch as
// in progress in another session (a CI failure of TestPrepareAbortRace on
// a loaded machine).
func TestPrepareOutlastsProbe(t *testing.T) {
	// PostgreSQL only: MySQL's probe takes no lock on an absent key.
	for _, be := range backends {
		if be.name != "postgres" {
			continue
		}
		f := setup(t, be)
		b := f.branch("p")
		tx, err := f.db.BeginTx(f.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var locked bool
		if err := tx.QueryRowContext(f.ctx, "SELECT pg_try_advisory_xact_lock($1)", lockKey(XID(b.GID, b.BranchID))).Scan(&locked); err != nil || !locked {
			t.Fatalf("take the lock: %v, %v", locked, err)
		}
		done := make(chan error, 1)
		go func() { done <- Prepare(f.ctx, f.db, f.d, b, f.insert(1, 0, nil)) }()
		time.Sleep(3 * time.Millisecond)
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Prepare after a 3 ms lock: %v", err)
		}
		if !f.prepared(b) {
			t.Fatal("branch not prepared")
		}
		if err := Commit(f.ctx, f.db, f.d, b); err != nil {
			t.Fatal(err)
		}
	}
}
