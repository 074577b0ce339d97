package twopc

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/xa"
)

// initialStock is the T-shirts the inventory holds at the start.
const initialStock = 10

// orderReq is the payload both branches of an order get.
type orderReq struct {
	Customer string `json:"customer"`
	SKU      string `json:"sku"`
	Qty      int64  `json:"qty"`
}

// shop is the seed's example: "order" records the order and counts it on
// the customer (PostgreSQL), "inventory" takes the items from stock
// (MariaDB) and votes no when there are not enough.
type shop struct {
	t                 *testing.T
	prefix            string // every gid of the test starts with it
	orders, customers string // PostgreSQL tables
	stock             string // MariaDB table
	order, inventory  *service
	n                 int
}

func newShop(t *testing.T) *shop {
	t.Helper()
	s := &shop{
		t:         t,
		prefix:    testenv.UniqueName(t, "tp"),
		orders:    testenv.UniqueName(t, "tp_orders"),
		customers: testenv.UniqueName(t, "tp_customers"),
		stock:     testenv.UniqueName(t, "tp_stock"),
	}
	s.order = newService(t, "order", xa.Postgres, testenv.PostgresXA, s.prefix, s.placeOrder)
	s.inventory = newService(t, "inventory", xa.MySQL, testenv.MariaDBXA, s.prefix, s.takeStock)
	s.order.createTable(s.orders, "gid VARCHAR(128) PRIMARY KEY, customer VARCHAR(64) NOT NULL, qty BIGINT NOT NULL")
	s.order.createTable(s.customers, "id VARCHAR(64) PRIMARY KEY, orders BIGINT NOT NULL")
	s.order.exec("INSERT INTO " + s.customers + " (id, orders) VALUES ('A', 0)")
	s.inventory.createTable(s.stock, "sku VARCHAR(64) PRIMARY KEY, qty BIGINT NOT NULL")
	s.inventory.exec("INSERT INTO "+s.stock+" (sku, qty) VALUES ('tshirt', ?)", initialStock)
	return s
}

// placeOrder is the order service's prepare.
func (s *shop) placeOrder(ctx context.Context, b participant.Branch, payload []byte, conn *sql.Conn) error {
	var req orderReq
	if err := json.Unmarshal(payload, &req); err != nil {
		return participant.Reject("bad order: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO "+s.orders+" (gid, customer, qty) VALUES ($1, $2, $3)", b.GID, req.Customer, req.Qty); err != nil {
		return err
	}
	_, err := conn.ExecContext(ctx, "UPDATE "+s.customers+" SET orders = orders + 1 WHERE id = $1", req.Customer)
	return err
}

// takeStock is the inventory service's prepare.
func (s *shop) takeStock(ctx context.Context, b participant.Branch, payload []byte, conn *sql.Conn) error {
	var req orderReq
	if err := json.Unmarshal(payload, &req); err != nil {
		return participant.Reject("bad order: %v", err)
	}
	res, err := conn.ExecContext(ctx, "UPDATE "+s.stock+" SET qty = qty - ? WHERE sku = ? AND qty >= ?", req.Qty, req.SKU, req.Qty)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return participant.Reject("not enough %s in stock for %d", req.SKU, req.Qty)
	}
	return nil
}

// newGID returns a gid of the test.
func (s *shop) newGID() string {
	s.n++
	return fmt.Sprintf("%s-%d", s.prefix, s.n)
}

// twoPC builds user A's order of qty T-shirts.
func (s *shop) twoPC(c *client.Client, gid string, qty int64) *client.TwoPC {
	req := orderReq{Customer: "A", SKU: "tshirt", Qty: qty}
	return c.NewTwoPC(gid).
		AddBranch(s.order.name, s.order.url, req).
		AddBranch(s.inventory.name, s.inventory.url, req)
}

func (s *shop) orderVisible(gid string) bool {
	return s.order.queryInt("SELECT COUNT(*) FROM "+s.orders+" WHERE gid = $1", gid) == 1
}

func (s *shop) stockLeft() int64 {
	return s.inventory.queryInt("SELECT qty FROM " + s.stock + " WHERE sku = 'tshirt'")
}

func (s *shop) customerOrders() int64 {
	return s.order.queryInt("SELECT orders FROM " + s.customers + " WHERE id = 'A'")
}

// customerLocked and stockLocked report whether a prepared branch holds
// the row an order changes.
func (s *shop) customerLocked() bool {
	return s.order.updateBlocked("UPDATE " + s.customers + " SET orders = orders WHERE id = 'A'")
}

func (s *shop) stockLocked() bool {
	return s.inventory.updateBlocked("UPDATE " + s.stock + " SET qty = qty WHERE sku = 'tshirt'")
}

// expectUnchanged checks that no order of gid took effect anywhere.
func (s *shop) expectUnchanged(gid string, orders int64) {
	s.t.Helper()
	if s.orderVisible(gid) {
		s.t.Errorf("order row of %s is visible", gid)
	}
	if got := s.stockLeft(); got != initialStock {
		s.t.Errorf("stock %d, want %d", got, initialStock)
	}
	if got := s.customerOrders(); got != orders {
		s.t.Errorf("customer A has %d orders, want %d", got, orders)
	}
}

// expectNothingPrepared waits until neither database has a prepared
// branch of gid.
func (s *shop) expectNothingPrepared(gid string) {
	s.t.Helper()
	eventually(s.t, settleTimeout, "no prepared branch of "+gid, func() bool {
		return len(s.order.prepared(gid)) == 0 && len(s.inventory.prepared(gid)) == 0
	})
}

// expectBothPrepared checks that both branches of gid are prepared.
func (s *shop) expectBothPrepared(gid string) {
	s.t.Helper()
	o, i := s.order.prepared(gid), s.inventory.prepared(gid)
	if len(o) != 1 || o[0].BranchID != s.order.name || len(i) != 1 || i[0].BranchID != s.inventory.name {
		s.t.Fatalf("prepared: order %v, inventory %v; want one branch each", o, i)
	}
}

// blockedUpdate starts an update of the locked stock row with a long lock
// wait, and returns the channel of its result.
func (s *shop) blockedUpdate() <-chan error {
	conn := s.inventory.lockedSession(settleTimeout)
	done := make(chan error, 1)
	go func() {
		defer discard(conn)
		_, err := conn.ExecContext(context.WithoutCancel(s.t.Context()), "UPDATE "+s.stock+" SET qty = qty WHERE sku = 'tshirt'")
		done <- err
	}()
	return done
}

// decision asks the coordinator what it decided for gid.
func decision(t *testing.T, c *coord, gid string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
	defer cancel()
	d, err := c.Client.Decision(ctx, gid)
	if err != nil {
		t.Fatalf("decision of %s: %v", gid, err)
	}
	return d
}

// wait returns the first value of ch, failing the test after timeout.
func wait[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
	panic("unreachable")
}
