package demo

// The msg mode: the lecture's third method, eventual consistency with
// reliable messages, on the same three services.
//
//   - The order service creates the order and emits "order created" in one
//     step: client.Message.DoAndSubmit prepares the message (the coordinator
//     holds it), runs the local transaction through Barrier.DoMessage (the
//     order row and the barrier row the check-back reads commit together)
//     and submits it.
//   - "order created" goes to the payment service (charge) and to the
//     inventory service (reserve the items). Each consumes it through its
//     Barrier.Do with op deliver, so a repeated delivery changes nothing.
//   - The payment service records its outcome together with the delivery's
//     barrier row, then emits its own transactional message: "payment done"
//     (order → paid, inventory ships the reservation) or, when the balance
//     is short, the compensating "payment failed" (order → cancelled,
//     inventory releases the reservation). It acknowledges the delivery only
//     once that message is submitted, so until then the coordinator's retry
//     of "order created" drives it; the barrier keeps the charge from
//     running twice.
//
// Nothing is locked across services and nothing is undone by a global
// abort: a failure is rolled back by more messages, forward.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
)

// The services' message endpoints.
const (
	pathCheckBack     = "/msg/check-back"     // order and payment: did the local transaction commit?
	pathOrderCreated  = "/msg/order-created"  // payment and inventory consume it
	pathPaymentDone   = "/msg/payment-done"   // order and inventory consume it
	pathPaymentFailed = "/msg/payment-failed" // order and inventory consume it
)

// The events, as the console names them.
const (
	evOrderCreated  = "order created"
	evPaymentDone   = "payment done"
	evPaymentFailed = "payment failed"
)

// The payment service's outcomes, and the order's final statuses.
const (
	outcomePaid    = "paid"
	outcomeFailed  = "failed"
	orderPaid      = "paid"
	orderCancelled = "cancelled"
)

// In the msg mode user A has too little money: the lecture's failed
// payment.
var msgBalances = []struct {
	user    string
	balance int
}{{"A", 50}, {"B", 100}}

var msgScenarios = []scenario{
	{user: "B", qty: 2, want: orderPaid,
		title: "user B buys 2 T-shirts (30) with a balance of 100"},
	{user: "A", qty: 4, want: orderCancelled,
		title: "user A buys 4 T-shirts (60) with a balance of only 50"},
}

// The inventory keeps one reservation per order until it ships or
// releases it.
var msgStockSchema = append(slices.Clone(stockSchema), `CREATE TABLE reservations (
	order_id INTEGER PRIMARY KEY,
	sku      TEXT    NOT NULL,
	qty      INTEGER NOT NULL
)`)

// The payment service's accounts, and its record of what it answered to
// each "order created" message and under which message gid it announced
// that (bookkeeping for redeliveries, like the barrier table; not shop
// data).
var msgAccountSchema = func() []string {
	s := []string{accountSchema[0]}
	for _, a := range msgBalances {
		s = append(s, fmt.Sprintf(`INSERT INTO accounts (user, balance, frozen) VALUES ('%s', %d, 0)`, a.user, a.balance))
	}
	return append(s, `CREATE TABLE payment_results (
	order_gid TEXT PRIMARY KEY,
	outcome   TEXT NOT NULL,
	reason    TEXT NOT NULL,
	event_gid TEXT
)`)
}()

// errNotYet is a consumer's "I cannot take this yet": a 500, so the
// coordinator delivers it again later. It is not a refusal.
var errNotYet = errors.New("not yet")

// MessageReport is one reliable message of a msg-mode purchase.
type MessageReport struct {
	GID, Event, Status string
}

// msgShop is the shop wired for messages.
type msgShop struct {
	*shop
	c   *client.Client
	out *console

	mu   sync.Mutex
	hold chan struct{} // while set, deliveries of payment results wait for it
}

// openMsgShop starts the three services with fresh databases in dir and
// mounts their message endpoints.
func openMsgShop(ctx context.Context, dir string, c *client.Client, out *console) (*msgShop, error) {
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	m := &msgShop{shop: &shop{}, c: c, out: out}
	var err error
	if m.order, err = openService(ctx, dir, "order", "orders", orderSchema, nil, phases{}, out); err != nil {
		return nil, err
	}
	if m.inventory, err = openService(ctx, dir, "inventory", "stock", msgStockSchema, nil, phases{}, out); err != nil {
		m.close()
		return nil, err
	}
	if m.payment, err = openService(ctx, dir, "payment", "accounts", msgAccountSchema, nil, phases{}, out); err != nil {
		m.close()
		return nil, err
	}
	o, inv, pay := m.order, m.inventory, m.payment
	o.mux.Handle("POST "+pathCheckBack, m.checkBack(o))
	pay.mux.Handle("POST "+pathCheckBack, m.checkBack(pay))
	pay.mux.Handle("POST "+pathOrderCreated, participant.Handler(m.charge))
	inv.mux.Handle("POST "+pathOrderCreated, m.consume(inv, evOrderCreated, false, reserveForOrder))
	inv.mux.Handle("POST "+pathPaymentDone, m.consume(inv, evPaymentDone, true, shipReservation))
	inv.mux.Handle("POST "+pathPaymentFailed, m.consume(inv, evPaymentFailed, true, releaseReservation))
	o.mux.Handle("POST "+pathPaymentDone, m.consume(o, evPaymentDone, true, setOrderStatus(orderPaid)))
	o.mux.Handle("POST "+pathPaymentFailed, m.consume(o, evPaymentFailed, true, setOrderStatus(orderCancelled)))
	return m, nil
}

func (m *msgShop) close() {
	m.release()
	m.shop.close()
}

// holdResults makes deliveries of "payment done" and "payment failed" wait
// until release, so that the demo can show the state in between.
func (m *msgShop) holdResults() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold == nil {
		m.hold = make(chan struct{})
	}
}

func (m *msgShop) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold != nil {
		close(m.hold)
		m.hold = nil
	}
}

func (m *msgShop) waitHeld(ctx context.Context) error {
	m.mu.Lock()
	h := m.hold
	m.mu.Unlock()
	if h == nil {
		return nil
	}
	select {
	case <-h:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// snapshot reads the shop's business tables (not the barrier tables nor
// payment_results, which are bookkeeping).
func (m *msgShop) snapshot(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	for _, t := range []struct {
		s     *service
		table string
	}{{m.order, "orders"}, {m.inventory, "stock"}, {m.inventory, "reservations"}, {m.payment, "accounts"}} {
		rows, err := readTable(ctx, t.s.db, t.table)
		if err != nil {
			return nil, err
		}
		snap = append(snap, Table{DB: t.s.file, Name: t.table, Rows: rows})
	}
	return snap, nil
}

// statusWriter remembers the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }

// checkBack serves the coordinator's check-back for messages s produced,
// with the barrier's exact answer, and prints it.
func (m *msgShop) checkBack(s *service) http.Handler {
	h := s.barrier.CheckBackHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		answer := fmt.Sprintf("HTTP %d: outcome unknown, ask again later", sw.code)
		switch sw.code {
		case http.StatusOK:
			answer = "the local transaction committed → deliver"
		case http.StatusConflict:
			answer = "the local transaction rolled back (or never ran, and now never will) → drop"
		}
		m.out.printf("  %-11s %-11s gid=%s  %s\n", "["+s.name+"]", "check-back", r.Header.Get(participant.HeaderGID), answer)
	})
}

// consume serves one event at a consumer: every delivery goes through the
// barrier (op deliver), so a repeated one is not applied twice. held
// deliveries wait while the demo shows the state in between.
func (m *msgShop) consume(s *service, event string, held bool, fn step) http.Handler {
	return participant.Handler(func(ctx context.Context, b participant.Branch, body []byte) error {
		p, err := m.delivery(s, b, body)
		if err != nil {
			return err
		}
		if held {
			if err := m.waitHeld(ctx); err != nil {
				return err
			}
		}
		var did string
		ran := false
		err = s.barrier.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
			ran = true
			var err error
			did, err = fn(ctx, tx, p)
			return err
		})
		m.report(s, b, event, ran, did, err)
		return err
	})
}

func (m *msgShop) delivery(s *service, b participant.Branch, body []byte) (purchase, error) {
	var p purchase
	if b.Op != participant.OpDeliver {
		return p, fmt.Errorf("%s takes deliveries, got %s", s.name, b.Op)
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fmt.Errorf("%s: payload: %w", s.name, err)
	}
	return p, nil
}

// report prints one line for a delivery a consumer handled.
func (m *msgShop) report(s *service, b participant.Branch, event string, ran bool, did string, err error) {
	var msg string
	switch {
	case errors.Is(err, errNotYet):
		msg = fmt.Sprintf("%s: %v → HTTP 500, the coordinator delivers it again", event, err)
	case err != nil:
		msg = fmt.Sprintf("%s: error → HTTP 500, the coordinator delivers it again: %v", event, err)
	case ran:
		msg = event + " → " + did
	default:
		msg = event + ": already applied, repeated delivery ignored by the barrier"
	}
	m.out.printf("  %-11s %-11s gid=%s  %s\n", "["+s.name+"]", b.Op, b.GID, msg)
}

// ---- the consumers' local transactions ----

// reserveForOrder moves the order's items from available to reserved. A
// consumer takes every message it is given: with too little stock it
// cannot say no, so the delivery fails and is retried (until an operator
// steps in); the demo's stock always suffices.
func reserveForOrder(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
	var have, reserved int
	if err := tx.QueryRowContext(ctx, `SELECT qty, reserved FROM stock WHERE sku = ?`, p.SKU).Scan(&have, &reserved); err != nil {
		return "", err
	}
	if have < p.Qty {
		return "", fmt.Errorf("stock short: have %d, want %d", have, p.Qty)
	}
	if err := execOne(ctx, tx, `UPDATE stock SET qty = qty - ?, reserved = reserved + ? WHERE sku = ?`, p.Qty, p.Qty, p.SKU); err != nil {
		return "", err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO reservations (order_id, sku, qty) VALUES (?, ?, ?)`, p.Order, p.SKU, p.Qty); err != nil {
		return "", err
	}
	return fmt.Sprintf("reserve %d × %s for order #%d: qty %d → %d, reserved %d → %d",
		p.Qty, p.SKU, p.Order, have, have-p.Qty, reserved, reserved+p.Qty), nil
}

// reservation reads the order's reservation; errNotYet if "order created"
// has not reached the inventory yet (the messages travel independently).
func reservation(ctx context.Context, tx *sql.Tx, p purchase) (qty, reserved int, err error) {
	err = tx.QueryRowContext(ctx, `SELECT r.qty, s.reserved FROM reservations r JOIN stock s ON s.sku = r.sku
		WHERE r.order_id = ?`, p.Order).Scan(&qty, &reserved)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("%w: no reservation for order #%d (its \"order created\" has not arrived)", errNotYet, p.Order)
	}
	return qty, reserved, err
}

func shipReservation(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
	qty, reserved, err := reservation(ctx, tx, p)
	if err != nil {
		return "", err
	}
	if err := execOne(ctx, tx, `UPDATE stock SET reserved = reserved - ? WHERE sku = ?`, qty, p.SKU); err != nil {
		return "", err
	}
	if err := execOne(ctx, tx, `DELETE FROM reservations WHERE order_id = ?`, p.Order); err != nil {
		return "", err
	}
	return fmt.Sprintf("ship the %d reserved × %s of order #%d: reserved %d → %d", qty, p.SKU, p.Order, reserved, reserved-qty), nil
}

func releaseReservation(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
	qty, reserved, err := reservation(ctx, tx, p)
	if err != nil {
		return "", err
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT qty FROM stock WHERE sku = ?`, p.SKU).Scan(&have); err != nil {
		return "", err
	}
	if err := execOne(ctx, tx, `UPDATE stock SET qty = qty + ?, reserved = reserved - ? WHERE sku = ?`, qty, qty, p.SKU); err != nil {
		return "", err
	}
	if err := execOne(ctx, tx, `DELETE FROM reservations WHERE order_id = ?`, p.Order); err != nil {
		return "", err
	}
	return fmt.Sprintf("release the %d reserved × %s of order #%d: qty %d → %d, reserved %d → %d (compensation)",
		qty, p.SKU, p.Order, have, have+qty, reserved, reserved-qty), nil
}

func setOrderStatus(status string) step {
	return func(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
		if err := execOne(ctx, tx, `UPDATE orders SET status = ? WHERE id = ? AND status = 'created'`, status, p.Order); err != nil {
			return "", err
		}
		if status == orderCancelled {
			return fmt.Sprintf("order #%d: created → cancelled (compensation; the record stays)", p.Order), nil
		}
		return fmt.Sprintf("order #%d: created → %s", p.Order, status), nil
	}
}

// ---- the payment service: consumer of "order created", producer of the result ----

// charge consumes "order created": it charges the user, or records that
// the balance is short, in one local transaction with the delivery's
// barrier row; then it announces the outcome with its own message. It
// acknowledges the delivery only once that message is submitted: until
// then the coordinator delivers "order created" again, the barrier skips
// the charge, and announce picks up the recorded outcome.
func (m *msgShop) charge(ctx context.Context, b participant.Branch, body []byte) error {
	s := m.payment
	p, err := m.delivery(s, b, body)
	if err != nil {
		return err
	}
	var did string
	ran := false
	err = s.barrier.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
		ran = true
		outcome, reason := outcomePaid, ""
		var balance int
		err := tx.QueryRowContext(ctx, `SELECT balance FROM accounts WHERE user = ?`, p.User).Scan(&balance)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			outcome, reason = outcomeFailed, fmt.Sprintf("no account for %q", p.User)
		case err != nil:
			return err
		case balance < p.Amount:
			outcome, reason = outcomeFailed, fmt.Sprintf("balance short: have %d, want %d", balance, p.Amount)
		default:
			if err := execOne(ctx, tx, `UPDATE accounts SET balance = balance - ? WHERE user = ?`, p.Amount, p.User); err != nil {
				return err
			}
		}
		if outcome == outcomePaid {
			did = fmt.Sprintf("charge %s %d: balance %d → %d", p.User, p.Amount, balance, balance-p.Amount)
		} else {
			did = fmt.Sprintf("cannot charge %s: %s → no charge; acknowledged anyway (a consumer does not refuse)", p.User, reason)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO payment_results (order_gid, outcome, reason) VALUES (?, ?, ?)`, b.GID, outcome, reason)
		return err
	})
	m.report(s, b, evOrderCreated, ran, did, err)
	if err != nil {
		return err
	}
	return m.announce(ctx, b.GID, p)
}

// announce emits the payment's outcome for "order created" message
// orderGID as a transactional message: prepare, a local transaction that
// records the message's gid next to the outcome (through DoMessage, so the
// check-back can answer), submit. A repeated delivery finds the gid and
// submits it again (harmless).
func (m *msgShop) announce(ctx context.Context, orderGID string, p purchase) error {
	s := m.payment
	var lastErr error
	for attempt := range 4 {
		var outcome, reason string
		var recorded sql.NullString
		if err := s.db.QueryRowContext(ctx, `SELECT outcome, reason, event_gid FROM payment_results WHERE order_gid = ?`,
			orderGID).Scan(&outcome, &reason, &recorded); err != nil {
			return err
		}
		if recorded.Valid {
			_, err := m.c.NewMessage(recorded.String).Submit(ctx)
			return err
		}
		event, path, gid := evPaymentDone, pathPaymentDone, orderGID+"-paid"
		if outcome == outcomeFailed {
			event, path, gid = evPaymentFailed, pathPaymentFailed, orderGID+"-unpaid"
		}
		if attempt > 0 {
			// The first gid was dropped (an earlier attempt died before
			// its local transaction): never reuse an aborted gid.
			var r [2]byte
			rand.Read(r[:])
			gid += "-" + hex.EncodeToString(r[:])
		}
		msg := m.c.NewMessage(gid).Payload(p).
			ToBranch("order", m.order.url+path, nil).
			ToBranch("inventory", m.inventory.url+path, nil)
		tx, err := msg.Prepare(ctx, s.url+pathCheckBack)
		if err != nil {
			return err
		}
		if tx.Status != "prepared" {
			lastErr = fmt.Errorf("message %s is %s already", gid, tx.Status)
			continue // look again: recorded by a concurrent delivery, or dropped
		}
		what := "the payment went through"
		if outcome == outcomeFailed {
			what = "compensating message: " + reason
		}
		m.out.printf("  %-11s %-11s gid=%s  half message %q → order, inventory (%s)\n", "[payment]", "prepare", gid, event, what)
		err = s.barrier.DoMessage(ctx, gid, func(ctx context.Context, tx *sql.Tx) error {
			return execOne(ctx, tx, `UPDATE payment_results SET event_gid = ? WHERE order_gid = ? AND event_gid IS NULL`, gid, orderGID)
		})
		switch {
		case errors.Is(err, participant.ErrOutcomeUnknown):
			return err // the check-back decides; the next delivery looks again
		case errors.Is(err, participant.ErrRejected):
			lastErr = err // fenced by the check-back already: a new gid
			continue
		case err != nil:
			lastErr = err
			if _, aerr := msg.Abort(ctx, err.Error()); aerr != nil {
				return errors.Join(err, aerr)
			}
			continue
		}
		m.out.printf("  %-11s %-11s gid=%s  local transaction: record that %s announces order #%d's payment (%s)\n",
			"[payment]", "local tx", gid, gid, p.Order, outcome)
		if _, err := msg.Submit(ctx); err != nil {
			return err
		}
		m.out.printf("  %-11s %-11s gid=%s  committed → submit; only now is %s's delivery of %q acknowledged\n",
			"[payment]", "submit", gid, orderGID, evOrderCreated)
		return nil
	}
	return fmt.Errorf("announce the payment of %s: %w", orderGID, lastErr)
}

// ---- the story ----

func printMsgHeader(out *console, m *msgShop) {
	out.printf("\n══ MSG %s\n", strings.Repeat("═", 71))
	out.printf("  The lecture's third method: eventual consistency with reliable messages. No service\n")
	out.printf("  waits for another and nothing is locked across services. Each service commits its own\n")
	out.printf("  local transaction and tells the next ones with a message that the coordinator holds as\n")
	out.printf("  a half message until that local transaction committed (it asks the producer's check-\n")
	out.printf("  back if the producer goes quiet), then delivers to every consumer, retrying until each\n")
	out.printf("  acknowledges. Consumers deduplicate deliveries with their barrier. A consumer never\n")
	out.printf("  refuses a message: when it cannot do its part, it acknowledges and emits a compensating\n")
	out.printf("  message, and the services that already did theirs undo it. Rollback goes forward.\n\n")
	out.printf("  %-10s %-26s %-22s %s\n", "order", m.order.url, m.order.where, "emits order created; takes payment done / failed")
	out.printf("  %-10s %-26s %-22s %s\n", "inventory", m.inventory.url, m.inventory.where, "takes order created (reserve), payment done (ship) / failed (release)")
	out.printf("  %-10s %-26s %-22s %s\n", "payment", m.payment.url, m.payment.where, "takes order created (charge); emits payment done / failed")
}

// runMsgMode plays both purchases with messages in a fresh shop.
func runMsgMode(ctx context.Context, c *client.Client, dir string, out *console) (ModeReport, []error, error) {
	mr := ModeReport{Mode: ModeMsg}
	m, err := openMsgShop(ctx, dir, c, out)
	if err != nil {
		return mr, nil, err
	}
	defer m.close()
	if mr.Initial, err = m.snapshot(ctx); err != nil {
		return mr, nil, err
	}
	printMsgHeader(out, m)
	out.printf("\n  The shop opens with:\n")
	printSnapshot(out, mr.Initial)

	var checks []error
	before := mr.Initial
	for i, sc := range msgScenarios {
		p := purchase{Order: i + 1, User: sc.user, SKU: sku, Qty: sc.qty, Amount: sc.qty * price}
		out.printf("\n── MSG %d. %s %s\n", i+1, sc.title, strings.Repeat("─", max(3, 70-len(ModeMsg)-len(sc.title))))
		pr := Purchase{User: p.User, Qty: p.Qty, Amount: p.Amount, GID: newGID(ModeMsg, p.User), Before: before}
		tctx, cancel := context.WithTimeout(ctx, txTimeout)
		err := m.purchase(tctx, &pr, p)
		cancel()
		if err != nil {
			return mr, checks, fmt.Errorf("demo: msg purchase %d: %w", i+1, err)
		}
		mr.Purchases = append(mr.Purchases, pr)
		checks = append(checks, m.check(ctx, sc, pr, p)...)
		before = pr.After
	}
	return mr, checks, nil
}

// purchase plays one purchase: the order and "order created", its
// deliveries, the state in between, then the payment's message and its
// deliveries.
func (m *msgShop) purchase(ctx context.Context, pr *Purchase, p purchase) error {
	out := m.out
	m.holdResults()
	defer m.release()

	out.printf("  Step 1: the order service creates the order and emits %q, atomically.\n", evOrderCreated)
	msg := m.c.NewMessage(pr.GID).Payload(p).
		ToBranch("payment", m.payment.url+pathOrderCreated, nil).
		ToBranch("inventory", m.inventory.url+pathOrderCreated, nil)
	out.printf("  %-11s %-11s gid=%s  half message %q → payment, inventory (held, not delivered)\n", "[order]", "prepare", pr.GID, evOrderCreated)
	err := msg.DoAndSubmit(ctx, m.order.url+pathCheckBack, func(ctx context.Context, gid string) error {
		return m.order.barrier.DoMessage(ctx, gid, func(ctx context.Context, tx *sql.Tx) error {
			did, err := createOrder("created")(ctx, tx, p)
			if err == nil {
				out.printf("  %-11s %-11s gid=%s  local transaction: %s, with the check-back's barrier row\n", "[order]", "local tx", gid, did)
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	out.printf("  %-11s %-11s gid=%s  committed → submit: the coordinator delivers %q\n", "[order]", "submit", pr.GID, evOrderCreated)
	out.printf("\n  Step 2: payment and inventory consume %q (each through its barrier).\n", evOrderCreated)
	tx, err := m.c.Wait(ctx, pr.GID)
	if err != nil {
		return err
	}
	pr.Messages = append(pr.Messages, MessageReport{GID: pr.GID, Event: evOrderCreated, Status: tx.Status})
	out.printf("  %-11s %-11s gid=%s  %q: %s (payment and inventory acknowledged)\n", "[concord]", "outcome", pr.GID, evOrderCreated, strings.ToUpper(tx.Status))
	if tx.Status != client.StatusSucceeded {
		return fmt.Errorf("%q ended %s (%s)", evOrderCreated, tx.Status, tx.Reason+tx.StuckReason)
	}

	var outcome, reason string
	var follow sql.NullString
	if err := m.payment.db.QueryRowContext(ctx, `SELECT outcome, reason, event_gid FROM payment_results WHERE order_gid = ?`,
		pr.GID).Scan(&outcome, &reason, &follow); err != nil {
		return fmt.Errorf("payment's outcome for %s: %w", pr.GID, err)
	}
	if !follow.Valid {
		return fmt.Errorf("payment acknowledged %s without announcing its outcome", pr.GID)
	}
	event := evPaymentDone
	if outcome == outcomeFailed {
		event = evPaymentFailed
	}
	pr.Reason = reason
	if pr.Between, err = m.snapshot(ctx); err != nil {
		return err
	}
	out.printf("\n  In between (the demo holds the deliveries of %q for a moment to show this):\n", event)
	printSnapshot(out, pr.Between)
	if outcome == outcomeFailed {
		out.printf("  Order #%d exists and %d × %s are reserved, but the payment failed: the shop is not\n", p.Order, p.Qty, p.SKU)
		out.printf("  consistent right now, and nothing is locked. It will be: %q is already accepted\n", event)
		out.printf("  by the coordinator, which delivers it until every consumer has it.\n")
		out.printf("\n  Step 3: the compensating message %q reaches order and inventory, which undo their part.\n", event)
	} else {
		out.printf("  %s is charged and %d × %s are reserved; the order still says created until %q\n", p.User, p.Qty, p.SKU, event)
		out.printf("  arrives: eventual consistency.\n")
		out.printf("\n  Step 3: %q reaches order and inventory.\n", event)
	}
	m.release()
	if tx, err = m.c.Wait(ctx, follow.String); err != nil {
		return err
	}
	pr.Messages = append(pr.Messages, MessageReport{GID: follow.String, Event: event, Status: tx.Status})
	pr.Status = tx.Status
	out.printf("  %-11s %-11s gid=%s  %q: %s (order and inventory acknowledged)\n", "[concord]", "outcome", follow.String, event, strings.ToUpper(tx.Status))
	if pr.After, err = m.snapshot(ctx); err != nil {
		return err
	}
	for _, r := range pr.After.Table("orders") {
		if strings.HasPrefix(r, fmt.Sprintf("id=%d ", p.Order)) {
			pr.OrderStatus = r[strings.LastIndex(r, "status=")+len("status="):]
		}
	}
	return nil
}

// check prints a msg-mode purchase's outcome and returns the failed checks.
func (m *msgShop) check(ctx context.Context, sc scenario, pr Purchase, p purchase) []error {
	out := m.out
	out.printf("\n  Databases now:\n")
	printSnapshot(out, pr.After)
	var errs []error
	fail := func(format string, args ...any) {
		err := fmt.Errorf("%w: msg purchase by %s: %s", ErrCheck, pr.User, fmt.Sprintf(format, args...))
		out.printf("  ✗ %v\n", err)
		errs = append(errs, err)
	}
	for _, mg := range pr.Messages {
		if mg.Status != client.StatusSucceeded {
			fail("message %q (%s) is %s, want succeeded", mg.Event, mg.GID, mg.Status)
		}
	}
	if pr.OrderStatus != sc.want {
		fail("order #%d is %q, want %q", p.Order, pr.OrderStatus, sc.want)
	}
	diff := pr.Before.Diff(pr.After)
	if sc.want == orderCancelled {
		row := fmt.Sprintf("id=%d user=%s sku=%s qty=%d amount=%d status=%s", p.Order, p.User, p.SKU, p.Qty, p.Amount, orderCancelled)
		if want := []string{fmt.Sprintf("+ %-9s %s", "orders", row)}; !slices.Equal(diff, want) {
			fail("the failed purchase should leave only its cancelled order; it changed:\n    %s", strings.Join(diff, "\n    "))
			return errs
		}
		var results []string
		if rows, err := m.payment.db.QueryContext(ctx, `SELECT outcome, reason, event_gid FROM payment_results WHERE order_gid = ?`, pr.GID); err == nil {
			for rows.Next() {
				var o, r, e string
				if rows.Scan(&o, &r, &e) == nil {
					results = append(results, fmt.Sprintf("outcome=%s reason=%q event_gid=%s", o, r, e))
				}
			}
			rows.Close()
		}
		out.printf("\n  ✓ Rolled back by messages: stock, reservations and accounts are as before the purchase.\n")
		out.printf("    What remains is the order's record, kept as cancelled: the order service committed\n")
		out.printf("    it in step 1 and a committed local transaction is never erased, only compensated:\n")
		out.printf("      %s\n", diff[0])
		out.printf("    Besides shop data, bookkeeping remains: each service's barrier rows (which deliveries\n")
		out.printf("    it applied, which local transactions emitted a message), the coordinator's records of\n")
		out.printf("    both messages (until retention sweeps them), and payment's record of its answer:\n")
		for _, r := range results {
			out.printf("      payment_results %s\n", r)
		}
		return errs
	}
	if len(diff) == 0 {
		fail("the purchase changed nothing")
		return errs
	}
	out.printf("\n  What the purchase changed:\n")
	for _, d := range diff {
		out.printf("    %s\n", d)
	}
	return errs
}
