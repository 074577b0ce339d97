// Package msg tests reliable messages end to end: the real concord binary,
// a producer whose local transaction and check-back run on the real
// PostgreSQL through the barrier, and consumers that deduplicate deliveries
// on the real MariaDB.
package msg

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
	"github.com/concordtm/concord/participant"
)

// producer is the order service of the seed: it creates an order and
// emits "order created" atomically, through the barrier, on PostgreSQL.
type producer struct {
	db     *sql.DB
	br     *participant.Barrier
	orders string
	srv    *httptest.Server
	down   atomic.Bool // the check-back endpoint answers 503
	checks atomic.Int64
}

func newProducer(t *testing.T) *producer {
	db := testenv.Postgres(t)
	table := testenv.UniqueName(t, "msgbar")
	p := &producer{db: db, orders: table + "_orders"}
	br, err := participant.NewBarrier(db, participant.Postgres, participant.WithBarrierTable(table))
	if err != nil {
		t.Fatal(err)
	}
	p.br = br
	if err := br.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE "+p.orders+" (gid TEXT PRIMARY KEY, item TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table+", "+p.orders)
	})
	check := br.CheckBackHandler()
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.checks.Add(1)
		if p.down.Load() {
			http.Error(w, "producer is restarting", http.StatusServiceUnavailable)
			return
		}
		check.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// createOrder is the producer's local transaction for message gid.
func (p *producer) createOrder(ctx context.Context, gid string) error {
	return p.br.DoMessage(ctx, gid, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO "+p.orders+" (gid, item) VALUES ($1, 'tshirt')", gid)
		return err
	})
}

func (p *producer) hasOrder(t *testing.T, gid string) bool {
	var n int
	if err := p.db.QueryRowContext(t.Context(), "SELECT count(*) FROM "+p.orders+" WHERE gid = $1", gid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// consumer is a service that takes messages: every delivery goes through
// its barrier on MariaDB and, if new, appends a row to its inbox table.
// failFirst makes it answer 503 to the first N deliveries of each message.
type consumer struct {
	name      string
	db        *sql.DB
	br        *participant.Barrier
	inbox     string
	srv       *httptest.Server
	failFirst int
	calls     sync.Map // gid -> *atomic.Int64
	delay     time.Duration
}

func newConsumer(t *testing.T, name string, failFirst int) *consumer {
	db := testenv.MariaDB(t)
	table := testenv.UniqueName(t, "msgc")
	c := &consumer{name: name, db: db, inbox: table + "_inbox", failFirst: failFirst}
	br, err := participant.NewBarrier(db, participant.MySQL, participant.WithBarrierTable(table))
	if err != nil {
		t.Fatal(err)
	}
	c.br = br
	if err := br.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE "+c.inbox+" (gid VARCHAR(128) NOT NULL, body TEXT NOT NULL, at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table+", "+c.inbox)
	})
	c.srv = httptest.NewServer(participant.Handler(func(ctx context.Context, b participant.Branch, body []byte) error {
		n, _ := c.calls.LoadOrStore(b.GID, new(atomic.Int64))
		if k := n.(*atomic.Int64).Add(1); k <= int64(c.failFirst) {
			return fmt.Errorf("%s is warming up (call %d)", c.name, k)
		}
		if c.delay > 0 {
			time.Sleep(c.delay)
		}
		return c.br.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO "+c.inbox+" (gid, body) VALUES (?, ?)", b.GID, string(body))
			return err
		})
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// received returns how many times gid was applied (after dedup).
func (c *consumer) received(t *testing.T, gid string) int {
	var n int
	if err := c.db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+c.inbox+" WHERE gid = ?", gid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (c *consumer) attempts(gid string) int64 {
	n, ok := c.calls.Load(gid)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

func newGID(prefix string) string { return prefix + "-" + rand.Text()[:12] }

func settle(t *testing.T, c *client.Client, gid string) *client.Transaction {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tx, err := c.Wait(ctx, gid)
	if err != nil {
		t.Fatalf("Wait(%s): %v", gid, err)
	}
	return tx
}

func want(t *testing.T, tx *client.Transaction, status string) {
	t.Helper()
	if tx.Status != status {
		t.Fatalf("%s: status %q (reason %q, stuck %q), want %q", tx.GID, tx.Status, tx.Reason, tx.StuckReason, status)
	}
}

// fast makes a prepared message check back after 300ms and retry quickly.
var fast = client.Options{Timeout: 300 * time.Millisecond, RetryInitial: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond}

func TestOrderCreatedDeliveredToBothConsumers(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	p := newProducer(t)
	pay, inv := newConsumer(t, "payment", 0), newConsumer(t, "inventory", 0)
	m := c.NewMessage("").Payload(`{"event":"order-created","item":"tshirt"}`).
		ToBranch("payment", pay.srv.URL, nil).ToBranch("inventory", inv.srv.URL, nil)
	if err := m.DoAndSubmit(t.Context(), p.srv.URL, client.LocalTx(p.createOrder)); err != nil {
		t.Fatal(err)
	}
	tx := settle(t, c, m.GID())
	want(t, tx, "succeeded")
	if !p.hasOrder(t, m.GID()) || pay.received(t, m.GID()) != 1 || inv.received(t, m.GID()) != 1 {
		t.Fatalf("order %v, payment got %d, inventory got %d", p.hasOrder(t, m.GID()), pay.received(t, m.GID()), inv.received(t, m.GID()))
	}
	if p.checks.Load() != 0 {
		t.Errorf("%d check-backs for a message that was submitted", p.checks.Load())
	}
}

// The producer commits its local transaction and dies before Submit: the
// check-back finds the commit and the message is delivered.
func TestProducerDiesAfterLocalCommit(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	p := newProducer(t)
	pay := newConsumer(t, "payment", 0)
	m := c.NewMessage("").Payload("order created").To(pay.srv.URL).WithOptions(fast)
	if _, err := m.Prepare(t.Context(), p.srv.URL); err != nil {
		t.Fatal(err)
	}
	if err := p.createOrder(t.Context(), m.GID()); err != nil {
		t.Fatal(err)
	}
	// ... and no Submit: the producer's process is gone.
	tx := settle(t, c, m.GID())
	want(t, tx, "succeeded")
	if got := pay.received(t, m.GID()); got != 1 {
		t.Fatalf("payment received the message %d times, want 1", got)
	}
	if p.checks.Load() == 0 {
		t.Fatal("delivered without a check-back")
	}
}

// The producer dies before its local transaction commits: the check-back
// reports a rollback, nothing is delivered, and the producer's late local
// transaction (it was only slow) is refused.
func TestProducerDiesBeforeLocalCommit(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	p := newProducer(t)
	pay := newConsumer(t, "payment", 0)
	m := c.NewMessage("").Payload("order created").To(pay.srv.URL).WithOptions(fast)
	if _, err := m.Prepare(t.Context(), p.srv.URL); err != nil {
		t.Fatal(err)
	}
	tx := settle(t, c, m.GID())
	want(t, tx, "aborted")
	if err := p.createOrder(t.Context(), m.GID()); !errors.Is(err, participant.ErrRejected) {
		t.Fatalf("late local transaction: %v, want ErrRejected", err)
	}
	if p.hasOrder(t, m.GID()) || pay.attempts(m.GID()) != 0 {
		t.Fatalf("order exists %v, payment was called %d times; want neither", p.hasOrder(t, m.GID()), pay.attempts(m.GID()))
	}
}

// The local transaction fails (the seed's "balance short" at the producer):
// DoAndSubmit aborts the message; nothing is delivered.
func TestLocalTransactionFailsAbortsTheMessage(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	p := newProducer(t)
	pay := newConsumer(t, "payment", 0)
	m := c.NewMessage("").Payload("order created").To(pay.srv.URL)
	boom := errors.New("out of stock")
	err := m.DoAndSubmit(t.Context(), p.srv.URL, func(ctx context.Context, gid string) error {
		return p.br.DoMessage(ctx, gid, func(context.Context, *sql.Tx) error { return boom })
	})
	if !errors.Is(err, boom) {
		t.Fatalf("DoAndSubmit: %v, want the local error", err)
	}
	tx := settle(t, c, m.GID())
	want(t, tx, "aborted")
	if !strings.Contains(tx.Reason, "out of stock") {
		t.Errorf("reason %q does not carry the producer's", tx.Reason)
	}
	if pay.attempts(m.GID()) != 0 {
		t.Fatal("an aborted message was delivered")
	}
	// Submit after Abort is refused and changes nothing.
	if _, err := m.Submit(t.Context()); err == nil || !strings.Contains(err.Error(), "aborted") {
		t.Fatalf("submit after abort: %v", err)
	}
}

// The check-back endpoint stays down longer than the limit: the message
// needs attention (stuck, with an alert); nothing is delivered. When the
// producer is back, an operator's retry settles it from the check-back.
func TestCheckBackDownNeedsAttention(t *testing.T) {
	alerts := make(chan string, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		alerts <- r.Header.Get("Content-Type")
	}))
	defer hook.Close()
	srv := proc.Start(t, t.TempDir(), nil, "-alert-webhook", hook.URL)
	c := client.New(srv.URL)
	p := newProducer(t)
	pay := newConsumer(t, "payment", 0)
	p.down.Store(true)
	o := fast
	o.MaxAttempts = 3
	m := c.NewMessage("").Payload("order created").To(pay.srv.URL).WithOptions(o)
	if _, err := m.Prepare(t.Context(), p.srv.URL); err != nil {
		t.Fatal(err)
	}
	if err := p.createOrder(t.Context(), m.GID()); err != nil {
		t.Fatal(err)
	}
	tx := settle(t, c, m.GID())
	want(t, tx, "stuck")
	if !strings.Contains(tx.StuckReason, "check-back") {
		t.Errorf("stuck reason %q does not name the check-back", tx.StuckReason)
	}
	select {
	case <-alerts:
	case <-time.After(10 * time.Second):
		t.Fatal("no alert for a message that needs attention")
	}
	if pay.attempts(m.GID()) != 0 || p.checks.Load() != 3 {
		t.Fatalf("payment called %d times (want 0), %d check-backs (want 3)", pay.attempts(m.GID()), p.checks.Load())
	}
	p.down.Store(false)
	if _, err := c.Retry(t.Context(), m.GID()); err != nil {
		t.Fatal(err)
	}
	want(t, settle(t, c, m.GID()), "succeeded")
	if pay.received(t, m.GID()) != 1 {
		t.Fatal("not delivered after the retry")
	}
}

// A consumer that fails three times then succeeds gets the message once.
func TestConsumerFailsThenSucceeds(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	pay := newConsumer(t, "payment", 3)
	m := c.NewMessage("").Payload("pay 10").To(pay.srv.URL).WithOptions(client.Options{RetryInitial: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	tx, err := m.SendAndWait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want(t, tx, "succeeded")
	if pay.attempts(m.GID()) != 4 || pay.received(t, m.GID()) != 1 {
		t.Fatalf("attempts %d (want 4), received %d (want 1)", pay.attempts(m.GID()), pay.received(t, m.GID()))
	}
}

func TestDelayedDelivery(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	pay := newConsumer(t, "payment", 0)
	m := c.NewMessage("").Payload("reminder").To(pay.srv.URL).Delay(700 * time.Millisecond)
	start := time.Now()
	tx, err := m.SendAndWait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want(t, tx, "succeeded")
	if since := time.Since(start); since < 700*time.Millisecond {
		t.Fatalf("delivered after %v, before the 700ms delay", since)
	}
}

// kill -9 the coordinator while deliveries are in flight: after the
// restart every accepted message reaches every consumer exactly once
// (at least once on the wire, once after the consumer's barrier).
func TestCoordinatorKilledDuringDelivery(t *testing.T) {
	dir := t.TempDir()
	srv := proc.Start(t, dir, nil)
	c := client.New(srv.URL)
	pay, inv := newConsumer(t, "payment", 0), newConsumer(t, "inventory", 0)
	pay.delay, inv.delay = 20*time.Millisecond, 20*time.Millisecond
	const n = 60
	var gids []string
	for i := range n {
		m := c.NewMessage(newGID(fmt.Sprintf("k%d", i))).Payload(fmt.Sprintf("order %d", i)).To(pay.srv.URL).To(inv.srv.URL)
		if _, err := m.Send(t.Context()); err != nil {
			t.Fatal(err)
		}
		gids = append(gids, m.GID())
	}
	srv.Kill()
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv = restartOn(t, dir, addr)
	c = client.New(srv.URL)
	for _, g := range gids {
		want(t, settle(t, c, g), "succeeded")
		if a, b := pay.received(t, g), inv.received(t, g); a != 1 || b != 1 {
			t.Fatalf("%s: payment got it %d times, inventory %d; want 1 and 1", g, a, b)
		}
	}
}

// restartOn starts the coordinator again on its data directory, on the same
// address when it is free.
func restartOn(t *testing.T, dir, addr string) *proc.Server {
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		return proc.Start(t, dir, nil, "-addr", addr)
	}
	return proc.Start(t, dir, nil)
}
