package twopc

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/xa"
)

// Bank workload sizes.
const (
	bankAccounts = 4    // per database
	bankInitial  = 1000 // per account
	bankWorkers  = 6
	bankKills    = 3
	bankTraffic  = 9 * time.Second // how long the workers submit
)

// move is the payload of a bank branch.
type move struct {
	Account string `json:"account"`
	Delta   int64  `json:"delta"` // negative: debit, refused when funds are short
}

// bankDB is one bank's accounts table and its ledger of applied branches
// (one row per committed branch, written inside the branch).
type bankDB struct {
	svc              *service
	accounts, ledger string
}

func newBankDB(t *testing.T, name string, d xa.Dialect, open func(testing.TB) *sql.DB, prefix string) *bankDB {
	b := &bankDB{accounts: testenv.UniqueName(t, "tp_acct"), ledger: testenv.UniqueName(t, "tp_ledger")}
	b.svc = newService(t, name, d, open, prefix, b.apply)
	b.svc.createTable(b.accounts, "id VARCHAR(16) PRIMARY KEY, balance BIGINT NOT NULL")
	b.svc.createTable(b.ledger, "gid VARCHAR(128) PRIMARY KEY")
	for i := range bankAccounts {
		b.svc.exec(fmt.Sprintf("INSERT INTO %s (id, balance) VALUES ('a%d', %d)", b.accounts, i, bankInitial))
	}
	return b
}

// apply is the prepare of a bank branch. A lock wait that runs out (a
// distributed deadlock between two transfers that neither database can
// see) votes no, like a short balance.
func (b *bankDB) apply(ctx context.Context, br participant.Branch, payload []byte, conn *sql.Conn) error {
	var m move
	if err := json.Unmarshal(payload, &m); err != nil {
		return participant.Reject("bad move: %v", err)
	}
	ph := func(i int) string { return "?" }
	set := "SET SESSION innodb_lock_wait_timeout = 1"
	if b.svc.d == xa.Postgres {
		ph = func(i int) string { return fmt.Sprintf("$%d", i) }
		set = "SET LOCAL lock_timeout = '500ms'"
	}
	if _, err := conn.ExecContext(ctx, set); err != nil {
		return err
	}
	res, err := conn.ExecContext(ctx, fmt.Sprintf("UPDATE %s SET balance = balance + %s WHERE id = %s AND balance + %s >= 0",
		b.accounts, ph(1), ph(2), ph(3)), m.Delta, m.Account, m.Delta)
	if isLockTimeout(err) {
		return participant.Reject("%s is busy", m.Account)
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return participant.Reject("insufficient funds in %s", m.Account)
	}
	_, err = conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (gid) VALUES (%s)", b.ledger, ph(1)), br.GID)
	return err
}

func (b *bankDB) total() int64 {
	return b.svc.queryInt("SELECT COALESCE(SUM(balance), 0) FROM " + b.accounts)
}

func (b *bankDB) applied(t *testing.T) map[string]bool {
	t.Helper()
	rows, err := b.svc.observer.QueryContext(t.Context(), "SELECT gid FROM "+b.ledger)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var gid string
		if err := rows.Scan(&gid); err != nil {
			t.Fatal(err)
		}
		out[gid] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBankTransfersSurviveKills moves money between accounts in MariaDB
// and PostgreSQL with 2PC from 6 workers while the coordinator is killed
// with SIGKILL 3 times and restarted. Then the last coordinator, on its
// own (no Resolver), settles every transaction it knows, and each
// database's outcome is checked, per gid, against the coordinator's
// recorded decision (see checkDecisions): applied on both sides iff it
// succeeded with a commit decision, on neither iff it aborted or was never
// accepted, nothing left prepared. The total is unchanged.
func TestBankTransfersSurviveKills(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	prefix := testenv.UniqueName(t, "tb")
	banks := []*bankDB{
		newBankDB(t, "pg", xa.Postgres, testenv.PostgresXA, prefix),
		newBankDB(t, "maria", xa.MySQL, testenv.MariaDBXA, prefix),
	}
	const total = 2 * bankAccounts * bankInitial

	var current atomic.Pointer[coord]
	current.Store(startCoord(t, t.TempDir(), ""))

	ctx, stop := context.WithTimeout(t.Context(), bankTraffic)
	defer stop()
	var submitted, succeeded atomic.Int64
	var mu sync.Mutex
	var gids []string // every gid a worker tried to submit
	var wg sync.WaitGroup
	for w := range bankWorkers {
		wrng := rand.New(rand.NewPCG(uint64(seed), uint64(w+1)))
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				from, to := banks[0], banks[1]
				if wrng.IntN(2) == 1 {
					from, to = to, from
				}
				amount := 1 + wrng.Int64N(400)
				gid := fmt.Sprintf("%s-%d-%d", prefix, w, n)
				tp := current.Load().Client.NewTwoPC(gid).
					AddBranch("debit", from.svc.url, move{Account: fmt.Sprintf("a%d", wrng.IntN(bankAccounts)), Delta: -amount}).
					AddBranch("credit", to.svc.url, move{Account: fmt.Sprintf("a%d", wrng.IntN(bankAccounts)), Delta: amount}).
					WithOptions(client.Options{Timeout: 5 * time.Second})
				submitted.Add(1)
				mu.Lock()
				gids = append(gids, gid)
				mu.Unlock()
				callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				tx, err := tp.SubmitAndWait(callCtx)
				cancel()
				if err == nil && tx.Status == client.StatusSucceeded {
					succeeded.Add(1)
				}
				if err != nil { // the coordinator died: back off, the next one is current soon
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		})
	}

	for i := range bankKills {
		select {
		case <-ctx.Done():
			t.Fatalf("traffic ended before kill %d", i+1)
		case <-time.After(time.Duration(500+rng.IntN(1500)) * time.Millisecond):
		}
		c := current.Load()
		c.Srv.Kill()
		current.Store(c.Restart())
		t.Logf("kill %d done", i+1)
	}
	wg.Wait()
	t.Logf("%d transfers submitted, %d succeeded as seen by their workers", submitted.Load(), succeeded.Load())

	mu.Lock()
	defer mu.Unlock()
	out := checkDecisions(t, current.Load(), prefix+"-", gids, banks)
	if got := banks[0].total() + banks[1].total(); got != total {
		t.Errorf("total balance %d, want %d", got, total)
	}
	if out[client.StatusSucceeded] == 0 {
		t.Error("no transfer committed at all")
	}
}
