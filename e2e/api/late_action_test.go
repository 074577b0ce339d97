package api

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
)

// slowAccount is a participant whose first debit is slower than the branch
// timeout: the coordinator's call times out while the debit is still
// running, a retry that arrives meanwhile is refused (409, truthfully:
// nothing applied by that call), and then the first debit commits. Its
// handlers use the barrier on a real SQLite database.
type slowAccount struct {
	db      *sql.DB
	bar     *participant.Barrier
	slow    time.Duration
	mu      sync.Mutex
	busy    bool
	calls   int
	settled chan struct{} // closed when the slow first call has returned
}

func newSlowAccount(t *testing.T, slow time.Duration) *slowAccount {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "account.db")+
		"?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	bar, err := participant.NewBarrier(db, participant.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := bar.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE account (id TEXT PRIMARY KEY, balance INTEGER NOT NULL);
		INSERT INTO account VALUES ('A', 1000)`); err != nil {
		t.Fatal(err)
	}
	return &slowAccount{db: db, bar: bar, slow: slow, settled: make(chan struct{})}
}

func (a *slowAccount) balance(t *testing.T) int {
	t.Helper()
	var n int
	if err := a.db.QueryRowContext(context.Background(), `SELECT balance FROM account WHERE id = 'A'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (a *slowAccount) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/debit", participant.Handler(func(ctx context.Context, b participant.Branch, _ []byte) error {
		a.mu.Lock()
		if a.busy {
			a.mu.Unlock()
			return participant.Reject("busy: another debit of this account is running")
		}
		a.busy = true
		a.calls++
		first := a.calls == 1
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			a.busy = false
			a.mu.Unlock()
			if first {
				close(a.settled)
			}
		}()
		if first {
			// The work goes on after the coordinator has given up on
			// this call, as a real service's database work does.
			ctx = context.WithoutCancel(ctx)
		}
		err := a.bar.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
			if first {
				time.Sleep(a.slow)
			}
			_, err := tx.ExecContext(ctx, `UPDATE account SET balance = balance - 100 WHERE id = 'A'`)
			return err
		})
		// A late first debit that finds its compensation already
		// recorded (a null compensation) is refused by the barrier:
		// ErrRejected, nothing applied.
		return err
	}))
	mux.Handle("/credit", participant.Handler(func(ctx context.Context, b participant.Branch, _ []byte) error {
		return a.bar.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE account SET balance = balance + 100 WHERE id = 'A'`)
			return err
		})
	}))
	return mux
}

// A participant slower than the branch timeout, whose retry is refused
// while the first call is still running, must not keep its effect when the
// saga aborts: the rejected branch had a call of unknown outcome, so it is
// compensated, and the barrier makes the late debit and the compensation
// cancel out in either order. (Before the fix the saga aborted without
// compensating and the debit stayed: money lost, every time.)
func TestLateActionAfterRejectedRetry(t *testing.T) {
	t.Parallel()
	srv := serve(t)
	c := client.New(srv.URL)
	acct := newSlowAccount(t, 1500*time.Millisecond)
	hs := httptest.NewServer(acct.handler())
	t.Cleanup(hs.Close)

	gid := newGID("late")
	tx, err := c.NewSaga(gid).
		Add(hs.URL+"/debit", hs.URL+"/credit", `{"amount":100}`).
		WithOptions(client.Options{BranchTimeout: 500 * time.Millisecond, RetryInitial: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond, MaxAttempts: 10}).
		SubmitAndWait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, tx, client.StatusAborted)
	select {
	case <-acct.settled:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow first debit never returned")
	}
	b := branchOf(t, tx, "1")
	if b.ForwardStatus != "rejected" || b.BackwardStatus != "done" {
		t.Fatalf("branch 1: action %s, compensation %s; want rejected and done (compensated)", b.ForwardStatus, b.BackwardStatus)
	}
	if got := acct.balance(t); got != 1000 {
		t.Fatalf("the saga aborted but the balance is %d, want 1000 (the late debit stayed)", got)
	}
}
