// Package shared tests several concord processes on one shared store (the
// real PostgreSQL and Redis, and MariaDB): any instance serves any request,
// and when one is killed or paused the others finish its transactions, each
// exactly as decided. It also takes the store away in the middle of
// transactions and kills or hangs a participant mid-branch; every test
// checks the participant's effects against each transaction's outcome.
package shared

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	storeopen "github.com/concordtm/concord/internal/store/open"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
	"github.com/concordtm/concord/participant"
)

// sharedStores returns the store URLs to test, each with its own namespace,
// dropped when the test ends.
func sharedStores(t *testing.T) map[string]string {
	pg := testenv.PostgresDSN()
	testenv.Postgres(t) // skip or fail when unreachable
	redis := testenv.RedisAddr(t)
	prefix := testenv.UniqueName(t, "sh") + "_"
	out := map[string]string{
		"postgres": withParam(pg, "table_prefix="+prefix),
		"redis":    "redis://" + redis + "/0?namespace=" + prefix,
	}
	for _, u := range out {
		t.Cleanup(func() { drop(u) })
	}
	return out
}

func withParam(u, kv string) string {
	if strings.Contains(u, "?") {
		return u + "&" + kv
	}
	return u + "?" + kv
}

func drop(u string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := storeopen.Open(ctx, u)
	if err != nil {
		return
	}
	defer s.Close()
	if d, ok := s.(interface{ Drop(context.Context) error }); ok {
		d.Drop(ctx)
	}
}

// bank is the participant: every saga moves 10 from a user to the shop;
// action and compensation go through the barrier on PostgreSQL, with a ledger
// row for each that took effect.
type bank struct {
	db     *sql.DB
	br     *participant.Barrier
	ledger string
	srv    *httptest.Server
	calls  atomic.Int64
	reject sync.Map // gid -> true: branch "b" refuses
}

func newBank(t *testing.T) *bank {
	db := testenv.Postgres(t)
	db.SetMaxOpenConns(16) // PostgreSQL is shared with the other tests
	db.SetMaxIdleConns(16)
	table := testenv.UniqueName(t, "shbank")
	br, err := participant.NewBarrier(db, participant.Postgres, participant.WithBarrierTable(table))
	if err != nil {
		t.Fatal(err)
	}
	if err := br.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	ledger := table + "_ledger"
	if _, err := db.Exec("CREATE TABLE " + ledger + " (gid TEXT NOT NULL, branch TEXT NOT NULL, op TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + table + ", " + ledger) })
	b := &bank{db: db, br: br, ledger: ledger}
	b.srv = httptest.NewServer(participant.Handler(func(ctx context.Context, br participant.Branch, _ []byte) error {
		b.calls.Add(1)
		if br.Op == participant.OpAction {
			time.Sleep(15 * time.Millisecond) // keep transactions in flight
			if _, ok := b.reject.Load(br.GID); ok && br.BranchID == "b" {
				return participant.Reject("insufficient funds")
			}
		}
		return b.br.Do(ctx, br, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO "+b.ledger+" (gid, branch, op) VALUES ($1, $2, $3)", br.GID, br.BranchID, string(br.Op))
			return err
		})
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// effects returns, per branch, how many actions and compensations of gid
// took effect.
func (b *bank) effects(t *testing.T, gid string) map[string][2]int {
	rows, err := b.db.Query("SELECT branch, op FROM "+b.ledger+" WHERE gid = $1", gid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]int{}
	for rows.Next() {
		var br, op string
		if err := rows.Scan(&br, &op); err != nil {
			t.Fatal(err)
		}
		e := out[br]
		if op == string(participant.OpAction) {
			e[0]++
		} else {
			e[1]++
		}
		out[br] = e
	}
	return out
}

func TestKillOneOfThreeCoordinators(t *testing.T) {
	for name, u := range sharedStores(t) {
		t.Run(name, func(t *testing.T) { killOneOfThree(t, u) })
	}
}

func killOneOfThree(t *testing.T, storeURL string) {
	const ttl = 2 * time.Second
	args := []string{"-store", storeURL, "-lease-ttl", ttl.String()}
	var nodes []*proc.Server
	for range 3 {
		nodes = append(nodes, proc.Start(t, t.TempDir(), nil, args...))
	}
	for _, n := range nodes {
		t.Cleanup(func() { n.CheckLog(t) })
	}
	bk := newBank(t)
	clients := []*client.Client{client.New(nodes[0].URL), client.New(nodes[1].URL), client.New(nodes[2].URL)}

	var (
		mu    sync.Mutex
		acked []string
		down  atomic.Bool
	)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				node := (w + i) % 3
				if node == 0 && down.Load() {
					node = 1 + i%2
				}
				gid := fmt.Sprintf("sh-%d-%d-%s", w, i, rand.Text()[:6])
				if i%5 == 0 {
					bk.reject.Store(gid, true)
				}
				s := clients[node].NewSaga(gid).AddBranch(client.Branch{ID: "a", Action: bk.srv.URL, Compensate: bk.srv.URL, Payload: "10"}).
					AddBranch(client.Branch{ID: "b", Action: bk.srv.URL, Compensate: bk.srv.URL, Payload: "10"})
				if _, err := s.Submit(ctx); err != nil {
					if ctx.Err() == nil && !(node == 0 && down.Load()) && !errors.Is(err, context.Canceled) {
						// Only the killed node may fail a submission.
						t.Errorf("submit %s to node %d: %v", gid, node, err)
					}
					continue
				}
				mu.Lock()
				acked = append(acked, gid)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	down.Store(true)
	nodes[0].Kill()
	killedAt := time.Now()
	time.Sleep(1500 * time.Millisecond)
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d sagas accepted; the load did not run", len(acked))
	}
	// Every accepted saga finishes, through the survivors, within the
	// lease time plus slack; its effects match its outcome.
	deadline := killedAt.Add(ttl + 25*time.Second)
	outcomes := map[string]int{}
	var lastDone time.Time
	for i, gid := range acked {
		c := clients[1+i%2]
		wctx, cancel := context.WithDeadline(t.Context(), deadline)
		tx, err := c.Wait(wctx, gid)
		cancel()
		if err != nil {
			t.Fatalf("%s (accepted) did not finish %v after the kill: %v", gid, time.Since(killedAt), err)
		}
		other, err := clients[2-i%2].Get(t.Context(), gid)
		if err != nil || other.Status != tx.Status {
			t.Fatalf("%s: node %d says %s, the other node %v (%v)", gid, 1+i%2, tx.GetStatus(), other.GetStatus(), err)
		}
		outcomes[tx.Status]++
		if at := tx.UpdatedAt; at.After(lastDone) {
			lastDone = at
			if testing.Verbose() {
				t.Logf("latest so far: %s created %v after the kill, updated %v after: %v", gid, tx.CreatedAt.Sub(killedAt), at.Sub(killedAt), tx)
			}
		}
		eff := bk.effects(t, gid)
		_, rejected := bk.reject.Load(gid)
		switch tx.Status {
		case "succeeded":
			if rejected || eff["a"] != [2]int{1, 0} || eff["b"] != [2]int{1, 0} {
				t.Fatalf("%s succeeded with effects %v (reject=%v)", gid, eff, rejected)
			}
		case "aborted":
			for _, br := range []string{"a", "b"} {
				if e := eff[br]; e[0] != e[1] || e[0] > 1 {
					t.Fatalf("%s aborted but branch %s has %d actions and %d compensations", gid, br, e[0], e[1])
				}
			}
		default:
			t.Fatalf("%s ended %s (%s)", gid, tx.Status, tx.StuckReason)
		}
	}
	took := lastDone.Sub(killedAt).Round(time.Millisecond)
	t.Logf("%d sagas accepted: %v; the last one finished %v after the kill (lease %v); %d participant calls", len(acked), outcomes, took, ttl, bk.calls.Load())
	// The load ran on for 1.5s after the kill; the killed node's
	// transactions must be taken over within the lease time and a claim
	// interval, plus time to run them.
	if limit := 1500*time.Millisecond + ttl + ttl/4 + 3*time.Second; took > limit {
		t.Errorf("the last transaction finished %v after the kill; want within %v", took, limit)
	}
	if outcomes["aborted"] == 0 || outcomes["succeeded"] == 0 {
		t.Fatalf("outcomes %v: want both kinds", outcomes)
	}
}
