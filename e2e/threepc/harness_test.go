package threepc

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

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/twophase"
)

// TestMain removes the package's databases (and the private PostgreSQL
// server, if testenv.PostgresXA started one) after the tests.
func TestMain(m *testing.M) { testenv.Main(m) }

// serverFlags make retries short and the coordinator's deadline shorter
// than the participants' timeouts.
var serverFlags = []string{
	"-retry-initial", "20ms", "-retry-max", "200ms",
	"-branch-timeout", "5s", "-timeout", "10s",
	"-max-attempts", "200", "-max-total-attempts", "2000",
	"-max-wait", "5s",
}

const (
	settleTimeout = 30 * time.Second
	// The participants' timeouts: long enough for a normal run to finish
	// first, short enough to wait for in a test.
	voteTimeout     = 3 * time.Second
	decisionTimeout = 2 * time.Second
)

// coord is one life of the coordinator process over a data directory.
type coord = proc.Life

// startCoord starts `concord serve` on dir with this package's flags and
// the failpoints armed (none if empty).
func startCoord(t *testing.T, dir, failpoints string) *coord {
	t.Helper()
	return proc.StartLife(t, dir, failpoints, settleTimeout, serverFlags...)
}

// account is a 3PC participant over its own SQLite database: a balance
// that each branch changes by its payload (an integer), through
// twophase.Store.ThreePC, with the timeout sweeper running.
type account struct {
	t     *testing.T
	name  string
	db    *sql.DB
	store *twophase.Store
	url   string
	no    atomic.Bool // CanCommit says no
	// holdPreCommit makes the account's HTTP front hold every pre-commit
	// until the caller goes away, without delivering it (a pre-commit the
	// coordinator never got through); held receives one value per hold.
	holdPreCommit atomic.Bool
	held          chan struct{}
}

func newAccount(t *testing.T, name string, balance int) *account {
	t.Helper()
	return openAccount(t, name, balance, false)
}

// openAccount is newAccount with Skeen's termination protocol on or off.
func openAccount(t *testing.T, name string, balance int, termination bool) *account {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), name+".db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a := &account{t: t, name: name, db: db, held: make(chan struct{}, 16)}
	if a.store, err = twophase.New(db, participant.SQLite); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := a.store.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	a.exec(`CREATE TABLE account (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, held INTEGER NOT NULL)`)
	a.exec(`INSERT INTO account VALUES (1, ?, 0)`, balance)
	amount := func(p []byte) (n int) { fmt.Sscan(string(p), &n); return n }
	p, err := a.store.ThreePC(twophase.Resource{
		CanCommit: func(context.Context, participant.Branch, []byte) error {
			if a.no.Load() {
				return participant.Reject("%s is frozen", name)
			}
			return nil
		},
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
	}, twophase.ThreePCConfig{VoteTimeout: voteTimeout, DecisionTimeout: decisionTimeout, Termination: termination, AskTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx, 50*time.Millisecond) }()
	h := p.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.holdPreCommit.Load() && r.Header.Get(participant.HeaderOp) == string(participant.OpPreCommit) {
			select {
			case a.held <- struct{}{}:
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
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	a.url = srv.URL
	return a
}

func (a *account) exec(q string, args ...any) {
	a.t.Helper()
	if _, err := a.db.ExecContext(a.t.Context(), q, args...); err != nil {
		a.t.Fatal(err)
	}
}

// balance returns the account's balance and what is held for pre-committed
// branches.
func (a *account) balance() (balance, held int) {
	a.t.Helper()
	if err := a.db.QueryRowContext(a.t.Context(), `SELECT balance, held FROM account WHERE id = 1`).Scan(&balance, &held); err != nil {
		a.t.Fatal(err)
	}
	return balance, held
}

func (a *account) state(gid string) twophase.State {
	a.t.Helper()
	st, err := a.store.State(a.t.Context(), gid, a.name)
	if err != nil {
		a.t.Fatal(err)
	}
	return st
}

func (a *account) wantBalance(balance, held int) {
	a.t.Helper()
	if b, h := a.balance(); b != balance || h != held {
		a.t.Errorf("%s: balance %d held %d, want %d and %d", a.name, b, h, balance, held)
	}
}

// transfer is a 3PC moving amount from one account to the other.
func transfer(c *client.Client, gid string, from, to *account, amount int) *client.TwoPC {
	return c.NewThreePC(gid).
		AddBranch(from.name, from.url, fmt.Sprint(-amount)).
		AddBranch(to.name, to.url, fmt.Sprint(amount))
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, timeout, what, cond)
}
