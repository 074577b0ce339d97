package twopc

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/twophase"
)

// ledger is a 2PC participant over its own SQLite database through
// twophase.Store: a balance changed by the payload (an integer), held at
// prepare and applied at commit.
type ledger struct {
	t     *testing.T
	name  string
	db    *sql.DB
	store *twophase.Store
	res   twophase.Resource
	url   string
	// holdCommit makes the HTTP front hold every commit until the caller
	// goes away, without delivering it; held receives one value per hold.
	holdCommit atomic.Bool
	held       chan struct{}
}

func newLedger(t *testing.T, name string, balance int) *ledger {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), name+".db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	l := &ledger{t: t, name: name, db: db, held: make(chan struct{}, 16)}
	if l.store, err = twophase.New(db, participant.SQLite); err != nil {
		t.Fatal(err)
	}
	if err := l.store.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `CREATE TABLE account (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, held INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO account VALUES (1, ?, 0)`, balance); err != nil {
		t.Fatal(err)
	}
	amount := func(p []byte) (n int) { fmt.Sscan(string(p), &n); return n }
	l.res = twophase.Resource{
		Check: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, payload []byte) error {
			_, err := tx.ExecContext(ctx, `UPDATE account SET held = held + ? WHERE id = 1`, amount(payload))
			return err
		},
		Apply: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			_, err := tx.ExecContext(ctx, `UPDATE account SET balance = balance + ?1, held = held - ?1 WHERE id = 1`, amount(intent))
			return err
		},
		Undo: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			_, err := tx.ExecContext(ctx, `UPDATE account SET held = held - ? WHERE id = 1`, amount(intent))
			return err
		},
	}
	h := l.store.Handler(l.res)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.holdCommit.Load() && r.Header.Get(participant.HeaderOp) == string(participant.OpCommit) {
			select {
			case l.held <- struct{}{}:
			default:
			}
			// Read the body first: only then does the server watch the
			// connection and end r's context when the coordinator dies.
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(settleTimeout):
			}
			http.Error(w, "held by the test", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	l.url = srv.URL
	return l
}

func (l *ledger) state(gid string) twophase.State {
	l.t.Helper()
	st, err := l.store.State(l.t.Context(), gid, l.name)
	if err != nil {
		l.t.Fatal(err)
	}
	return st
}

func (l *ledger) wantBalance(balance, held int) {
	l.t.Helper()
	var b, h int
	if err := l.db.QueryRowContext(l.t.Context(), `SELECT balance, held FROM account WHERE id = 1`).Scan(&b, &h); err != nil {
		l.t.Fatal(err)
	}
	if b != balance || h != held {
		l.t.Errorf("%s: balance %d held %d, want %d and %d", l.name, b, h, balance, held)
	}
}

// The coordinator decides commit, alice gets her commit, bob's is still on
// its way when the coordinator dies (kill -9). Bob is prepared and
// uncertain: asking the coordinator gets no answer. Without the
// cooperative termination protocol he stays blocked; with it he asks alice,
// who committed, and commits without the coordinator.
func TestCooperativeTermination(t *testing.T) {
	alice, bob := newLedger(t, "alice", 100), newLedger(t, "bob", 0)
	bob.holdCommit.Store(true)
	c := startCoord(t, t.TempDir(), "")
	gid := "2pc-coop"
	_, err := c.Client.NewTwoPC(gid).
		AddBranch("alice", alice.url, "-30").
		AddBranch("bob", bob.url, "30").
		Submit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-bob.held:
	case <-time.After(settleTimeout):
		t.Fatal("bob's commit never came")
	}
	eventually(t, settleTimeout, "alice commits", func() bool { return alice.state(gid) == twophase.StateCommitted })
	c.Srv.Kill()
	bob.holdCommit.Store(false)
	if st := bob.state(gid); st != twophase.StatePrepared {
		t.Fatalf("bob at the crash: %q, want prepared", st)
	}

	r := &twophase.Resolver{Store: bob.store, Resource: bob.res, Decide: c.Client.Decision, AskTimeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
	defer cancel()
	rep, err := r.ResolveOnce(ctx)
	if err != nil || rep != (twophase.Resolution{Blocked: 1}) {
		t.Fatalf("without termination: %+v, %v; want blocked", rep, err)
	}
	r.Termination = true
	rep, err = r.ResolveOnce(ctx)
	if err != nil || rep != (twophase.Resolution{Committed: 1, ByPeers: 1}) {
		t.Fatalf("with termination: %+v, %v; want committed by the peers", rep, err)
	}
	alice.wantBalance(70, 0)
	bob.wantBalance(30, 0)

	// The coordinator back resends the commit; bob acknowledges it.
	c = c.Restart()
	if tx := c.WaitSettled(gid); tx.Status != "succeeded" {
		t.Fatalf("after restart: %s (%s), want succeeded", tx.Status, tx.Reason)
	}
	bob.wantBalance(30, 0) // applied once
}
