package xa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
)

// fakeCoordinator answers decisions from a map; a gid it does not know is
// presumed aborted, as the real coordinator answers.
type fakeCoordinator struct {
	decisions map[string]string
	asked     map[string]int
	fail      map[string]error
}

func (c *fakeCoordinator) decide(_ context.Context, gid string) (string, error) {
	if c.asked == nil {
		c.asked = map[string]int{}
	}
	c.asked[gid]++
	if err := c.fail[gid]; err != nil {
		return "", err
	}
	if d, ok := c.decisions[gid]; ok {
		return d, nil
	}
	return DecisionAbort, nil
}

// resolverFixture adds to fixture a gid prefix that scopes the Resolver to
// this test's branches (other tests' branches share the server).
type resolverFixture struct {
	*fixture
	prefix string
}

func newResolverFixture(t *testing.T, f *fixture) *resolverFixture {
	rf := &resolverFixture{fixture: f, prefix: testenv.UniqueName(t, "rs")}
	if _, err := f.db.ExecContext(f.ctx, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (100, 0)", f.table)); err != nil {
		t.Fatal(err)
	}
	return rf
}

func (rf *resolverFixture) gid(name string) string { return rf.prefix + "-" + name }

func (rf *resolverFixture) resolver(c *fakeCoordinator, minAge time.Duration) *Resolver {
	return &Resolver{
		DB: rf.db, Dialect: rf.d, Decide: c.decide, MinAge: minAge,
		Match: func(p Prepared) bool { return strings.HasPrefix(p.GID, rf.prefix+"-") },
	}
}

// prepareRow prepares a branch of gid that inserts row id and, if lock,
// also updates row 100 (holding its lock while prepared).
func (rf *resolverFixture) prepareRow(gid string, id int, lock bool) participant.Branch {
	rf.t.Helper()
	b := rf.branchWithGID(gid, "b1")
	err := Prepare(rf.ctx, rf.db, rf.d, b, func(ctx context.Context, conn *sql.Conn) error {
		if lock {
			if _, err := conn.ExecContext(ctx, "UPDATE "+rf.table+" SET v = v + 1 WHERE id = 100"); err != nil {
				return err
			}
		}
		return rf.insert(id, 1, nil)(ctx, conn)
	})
	if err != nil {
		rf.t.Fatalf("Prepare %s: %v", gid, err)
	}
	return b
}

// rowExists reads row id through another pool than any Prepare used.
func (rf *resolverFixture) rowExists(observer *sql.DB, id int) bool {
	rf.t.Helper()
	var n int
	if err := observer.QueryRowContext(rf.ctx, fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE id = %d", rf.table, id)).Scan(&n); err != nil {
		rf.t.Fatal(err)
	}
	return n == 1
}

// updateLocked tries to update row 100 from a new session with a short lock
// timeout, and reports whether the lock was busy.
func (rf *resolverFixture) updateLocked() bool {
	rf.t.Helper()
	conn, err := rf.db.Conn(rf.ctx)
	if err != nil {
		rf.t.Fatal(err)
	}
	defer conn.Raw(func(any) error { return errors.New("discard: session settings changed") })
	set := "SET lock_timeout = '200ms'"
	if rf.d == MySQL {
		set = "SET SESSION innodb_lock_wait_timeout = 1"
	}
	if _, err := conn.ExecContext(rf.ctx, set); err != nil {
		rf.t.Fatal(err)
	}
	_, err = conn.ExecContext(rf.ctx, "UPDATE "+rf.table+" SET v = v + 10 WHERE id = 100")
	if err != nil && !rf.d.isLockBusy(err) {
		rf.t.Fatalf("update of the locked row: %v", err)
	}
	return err != nil
}

func TestResolverAsksNeverGuesses(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		rf := newResolverFixture(t, f)
		unknown := rf.prepareRow(rf.gid("unknown"), 1, true)
		committed := rf.prepareRow(rf.gid("commit"), 2, false)
		pending := rf.prepareRow(rf.gid("pending"), 3, false)
		if !rf.updateLocked() {
			t.Fatal("the prepared branch does not hold its row lock")
		}
		c := &fakeCoordinator{decisions: map[string]string{
			committed.GID: DecisionCommit,
			pending.GID:   DecisionPending,
		}}
		rep, err := rf.resolver(c, 0).ResolveOnce(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := (Report{Committed: 1, Aborted: 1, Pending: 1}); rep != want {
			t.Fatalf("report %+v, want %+v", rep, want)
		}
		observer := f.be.open(t)
		if rf.rowExists(observer, 1) || !rf.rowExists(observer, 2) || rf.rowExists(observer, 3) {
			t.Fatal("rows: want only the committed branch's row visible")
		}
		if f.prepared(unknown) || f.prepared(committed) || !f.prepared(pending) {
			t.Fatal("want only the pending branch still prepared")
		}
		if rf.updateLocked() {
			t.Fatal("the aborted branch still holds its row lock")
		}
		// The next scan asks about the pending branch again, and only it.
		c.decisions[pending.GID] = DecisionCommit
		rep, err = rf.resolver(c, 0).ResolveOnce(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := (Report{Committed: 1}); rep != want {
			t.Fatalf("second scan: report %+v, want %+v", rep, want)
		}
		if c.asked[pending.GID] != 2 || c.asked[unknown.GID] != 1 || !rf.rowExists(observer, 3) {
			t.Fatalf("asked %v; want the pending gid asked twice, then committed", c.asked)
		}
	})
}

func TestResolverMinAge(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		rf := newResolverFixture(t, f)
		before := time.Now()
		b := rf.prepareRow(rf.gid("young"), 1, false)
		c := &fakeCoordinator{}
		rep, err := rf.resolver(c, time.Hour).ResolveOnce(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := (Report{Young: 1}); rep != want || len(c.asked) != 0 || !f.prepared(b) {
			t.Fatalf("report %+v, asked %v; want the young branch left alone", rep, c.asked)
		}

		const minAge = 300 * time.Millisecond
		r := rf.resolver(c, minAge)
		for {
			rep, err := r.ResolveOnce(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Aborted == 1 {
				break
			}
			if rep != (Report{Young: 1}) {
				t.Fatalf("report %+v before MinAge", rep)
			}
			select {
			case <-f.ctx.Done():
				t.Fatal("the branch was never old enough")
			case <-time.After(20 * time.Millisecond):
			}
		}
		// PostgreSQL counts from PreparedAt, MySQL from this Resolver's
		// first scan, which is later: either way not before MinAge after
		// the prepare (less a little slack for the database's clock).
		if waited := time.Since(before); waited < minAge-50*time.Millisecond {
			t.Fatalf("resolved %v after the prepare, before MinAge %v", waited, minAge)
		}
		if f.prepared(b) || rf.rowExists(f.db, 1) {
			t.Fatal("the presumed-aborted branch is still there")
		}
	})
}

func TestResolverErrorsLeaveBranch(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		rf := newResolverFixture(t, f)
		down := rf.prepareRow(rf.gid("down"), 1, false)
		odd := rf.prepareRow(rf.gid("odd"), 2, false)
		ok := rf.prepareRow(rf.gid("ok"), 3, false)
		unavailable := errors.New("coordinator unavailable")
		c := &fakeCoordinator{
			decisions: map[string]string{odd.GID: "maybe", ok.GID: DecisionCommit},
			fail:      map[string]error{down.GID: unavailable},
		}
		rep, err := rf.resolver(c, 0).ResolveOnce(f.ctx)
		if want := (Report{Committed: 1, Errors: 2}); rep != want {
			t.Fatalf("report %+v, want %+v", rep, want)
		}
		if !errors.Is(err, unavailable) || !errors.Is(err, ErrBadDecision) {
			t.Fatalf("error %v, want both branch errors", err)
		}
		if !f.prepared(down) || !f.prepared(odd) || f.prepared(ok) {
			t.Fatal("a branch without a usable decision was ended")
		}
	})
}

func TestResolverRun(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		rf := newResolverFixture(t, f)
		b := rf.prepareRow(rf.gid("run"), 1, false)
		c := &fakeCoordinator{decisions: map[string]string{b.GID: DecisionCommit}}
		r := rf.resolver(&fakeCoordinator{}, 0)
		r.Decide = func(ctx context.Context, gid string) (string, error) { return c.decisions[gid], nil }
		ctx, cancel := context.WithCancel(f.ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, 20*time.Millisecond) }()
		for !rf.rowExists(f.db, 1) {
			select {
			case <-f.ctx.Done():
				t.Fatal("Run never committed the branch")
			case <-time.After(10 * time.Millisecond):
			}
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		// MariaDB can list a branch in XA RECOVER for a moment after its
		// XA COMMIT made the rows visible; it must be gone soon after.
		for end := time.Now().Add(2 * time.Second); f.prepared(b); {
			if time.Now().After(end) {
				t.Fatal("still prepared 2s after its rows became visible")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
