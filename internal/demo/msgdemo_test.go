package demo

import (
	"bytes"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
)

func TestRunMsgMode(t *testing.T) {
	var out bytes.Buffer
	rep, err := Run(t.Context(), Options{Mode: ModeMsg, DataDir: t.TempDir(), Out: &out})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := modeNames(rep); !slices.Equal(got, []string{ModeMsg}) {
		t.Fatalf("modes = %v, want [msg]", got)
	}
	checkMsgMode(t, rep.Modes[0])
	for _, want := range []string{
		`[order]     prepare     gid=msg-A-`,
		`half message "order created" → payment, inventory`,
		`cannot charge A: balance short: have 50, want 60 → no charge; acknowledged anyway`,
		`half message "payment failed" → order, inventory (compensating message: balance short: have 50, want 60)`,
		`payment failed → order #2: created → cancelled`,
		`payment failed → release the 4 reserved × T-shirt of order #2: qty 4 → 8, reserved 4 → 0`,
		`"payment failed": SUCCEEDED`,
		`✓ Rolled back by messages`,
		`+ orders    id=2 user=A sku=T-shirt qty=4 amount=60 status=cancelled`,
		`payment_results outcome=failed reason="balance short: have 50, want 60" event_gid=msg-A-`,
		"msg   A buys   4 × T-shirt  →  cancelled  left only its cancelled order",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// checkMsgMode asserts every table of the msg mode's run: at the opening,
// in between (the first message delivered, the payment's not yet) and
// after each purchase.
func checkMsgMode(t *testing.T, mr ModeReport) {
	t.Helper()
	wantTables(t, "initial", mr.Initial, map[string][]string{
		"orders":       nil,
		"stock":        {"sku=T-shirt qty=10 reserved=0"},
		"reservations": nil,
		"accounts":     {"user=A balance=50 frozen=0", "user=B balance=100 frozen=0"},
	})
	if len(mr.Purchases) != 2 {
		t.Fatalf("%d purchases, want 2", len(mr.Purchases))
	}
	ok, failed := mr.Purchases[0], mr.Purchases[1]
	orderB := "id=1 user=B sku=T-shirt qty=2 amount=30 status="
	orderA := "id=2 user=A sku=T-shirt qty=4 amount=60 status="

	if ok.User != "B" || ok.Qty != 2 || ok.OrderStatus != orderPaid || ok.Status != client.StatusSucceeded || ok.Reason != "" {
		t.Errorf("purchase 1: %s × %d → order %s, %s %q; want B × 2 → order paid, succeeded", ok.User, ok.Qty, ok.OrderStatus, ok.Status, ok.Reason)
	}
	wantMessages(t, ok, evOrderCreated, evPaymentDone, "-paid")
	wantTables(t, "B in between", ok.Between, map[string][]string{
		"orders":       {orderB + "created"},
		"stock":        {"sku=T-shirt qty=8 reserved=2"},
		"reservations": {"order_id=1 sku=T-shirt qty=2"},
		"accounts":     {"user=A balance=50 frozen=0", "user=B balance=70 frozen=0"},
	})
	final := map[string][]string{
		"orders":       {orderB + "paid"},
		"stock":        {"sku=T-shirt qty=8 reserved=0"},
		"reservations": nil,
		"accounts":     {"user=A balance=50 frozen=0", "user=B balance=70 frozen=0"},
	}
	wantTables(t, "after B's purchase", ok.After, final)

	if failed.User != "A" || failed.Qty != 4 || failed.OrderStatus != orderCancelled || failed.Status != client.StatusSucceeded {
		t.Errorf("purchase 2: %s × %d → order %s, %s; want A × 4 → order cancelled, succeeded", failed.User, failed.Qty, failed.OrderStatus, failed.Status)
	}
	if failed.Reason != "balance short: have 50, want 60" {
		t.Errorf("purchase 2: reason %q", failed.Reason)
	}
	wantMessages(t, failed, evOrderCreated, evPaymentFailed, "-unpaid")
	wantTables(t, "A in between", failed.Between, map[string][]string{
		"orders":       {orderB + "paid", orderA + "created"},
		"stock":        {"sku=T-shirt qty=4 reserved=4"},
		"reservations": {"order_id=2 sku=T-shirt qty=4"},
		"accounts":     {"user=A balance=50 frozen=0", "user=B balance=70 frozen=0"},
	})
	// Everything as before A's purchase, but the cancelled order.
	final["orders"] = []string{orderB + "paid", orderA + "cancelled"}
	wantTables(t, "after A's purchase", failed.After, final)
	if d := failed.Before.Diff(failed.After); !slices.Equal(d, []string{"+ orders    " + orderA + "cancelled"}) {
		t.Errorf("A's failed purchase changed %q, want only its cancelled order", d)
	}
	if !ok.Before.Equal(mr.Initial) || !failed.Before.Equal(ok.After) {
		t.Error("each purchase's before-snapshot should be the previous state")
	}
}

func wantMessages(t *testing.T, pr Purchase, first, second, suffix string) {
	t.Helper()
	want := []MessageReport{
		{GID: pr.GID, Event: first, Status: client.StatusSucceeded},
		{GID: pr.GID + suffix, Event: second, Status: client.StatusSucceeded},
	}
	if !slices.Equal(pr.Messages, want) {
		t.Errorf("%s's messages = %+v, want %+v", pr.User, pr.Messages, want)
	}
}

// TestMsgConsumers calls the consumers directly, the way an unreliable
// network and independent messages may: a compensation before the
// delivery it undoes (retried, not applied), repeated deliveries (applied
// once), and a repeated "order created" at the payment service (charged
// once, announced once).
func TestMsgConsumers(t *testing.T) {
	dir := t.TempDir()
	url, stop, err := startCoordinator(t.Context(), filepath.Join(dir, "coordinator"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	c := client.New(url)
	var out bytes.Buffer
	m, err := openMsgShop(t.Context(), filepath.Join(dir, "shop"), c, &console{w: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output:\n%s", out.String())
		}
	})
	deliver := func(s *service, path, gid, body string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		participant.Branch{GID: gid, BranchID: s.name, Op: participant.OpDeliver, Mode: "msg"}.SetHeaders(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tables := func(name string) []string {
		t.Helper()
		snap, err := m.snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return snap.Table(name)
	}
	want := func(name string, rows ...string) {
		t.Helper()
		if got := tables(name); !slices.Equal(got, rows) {
			t.Errorf("%s = %q, want %q", name, got, rows)
		}
	}

	body := `{"order":7,"user":"B","sku":"T-shirt","qty":3,"amount":45}`
	if code := deliver(m.inventory, pathPaymentFailed, "g7-unpaid", body); code != http.StatusInternalServerError {
		t.Errorf("release before the reservation: HTTP %d, want 500 (deliver again later)", code)
	}
	want("stock", "sku=T-shirt qty=10 reserved=0")
	for range 2 {
		if code := deliver(m.inventory, pathOrderCreated, "g7", body); code != http.StatusOK {
			t.Errorf("reserve: HTTP %d, want 200", code)
		}
	}
	want("stock", "sku=T-shirt qty=7 reserved=3")
	want("reservations", "order_id=7 sku=T-shirt qty=3")
	for range 2 {
		if code := deliver(m.inventory, pathPaymentFailed, "g7-unpaid", body); code != http.StatusOK {
			t.Errorf("release: HTTP %d, want 200", code)
		}
	}
	want("stock", "sku=T-shirt qty=10 reserved=0")
	want("reservations")

	// Order 8 exists and is reserved; the payment service gets its
	// "order created" twice.
	body = `{"order":8,"user":"B","sku":"T-shirt","qty":2,"amount":30}`
	if _, err := m.order.db.ExecContext(t.Context(), `INSERT INTO orders (id, user, sku, qty, amount, status) VALUES (8, 'B', 'T-shirt', 2, 30, 'created')`); err != nil {
		t.Fatal(err)
	}
	if code := deliver(m.inventory, pathOrderCreated, "g8", body); code != http.StatusOK {
		t.Fatalf("reserve: HTTP %d", code)
	}
	for range 2 {
		if code := deliver(m.payment, pathOrderCreated, "g8", body); code != http.StatusOK {
			t.Errorf("charge: HTTP %d, want 200", code)
		}
	}
	tx, err := c.Wait(t.Context(), "g8-paid")
	if err != nil || tx.Status != client.StatusSucceeded {
		t.Fatalf("payment done: %v, %v", tx.GetStatus(), err)
	}
	want("accounts", "user=A balance=50 frozen=0", "user=B balance=70 frozen=0")
	want("orders", "id=8 user=B sku=T-shirt qty=2 amount=30 status=paid")
	want("stock", "sku=T-shirt qty=8 reserved=0")
	var n int
	if err := m.payment.db.QueryRowContext(t.Context(), `SELECT count(*) FROM payment_results WHERE order_gid = 'g8' AND event_gid = 'g8-paid'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("payment_results for g8: %d rows, %v; want 1", n, err)
	}
	if got := strings.Count(out.String(), "repeated delivery ignored by the barrier"); got != 3 {
		t.Errorf("%d repeated deliveries reported, want 3", got)
	}
}

// TestMsgCheckBack asks the payment service's check-back about a message
// whose local transaction never ran: the answer is "rolled back", and a
// late local transaction for it is refused.
func TestMsgCheckBack(t *testing.T) {
	var out bytes.Buffer
	m, err := openMsgShop(t.Context(), t.TempDir(), client.New("http://127.0.0.1:1"), &console{w: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, m.payment.url+pathCheckBack, nil)
	if err != nil {
		t.Fatal(err)
	}
	participant.Branch{GID: "g9-paid", BranchID: "check-back", Op: participant.OpCheck, Mode: "msg"}.SetHeaders(req.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("check-back: HTTP %d, want 409", resp.StatusCode)
	}
	if !strings.Contains(out.String(), "rolled back (or never ran, and now never will) → drop") {
		t.Errorf("output: %s", out.String())
	}
}
