package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/server"
	"github.com/concordtm/concord/participant"
)

// startCoordinator runs a real coordinator in-process on a temporary
// embedded store, for the examples. In production it is `concord serve`.
func startCoordinator() (url string, stop func()) {
	dir, _ := os.MkdirTemp("", "concord-example-")
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", dir
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		server.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(addr string) { ready <- addr })
	}()
	return "http://" + <-ready, func() { cancel(); <-done; os.RemoveAll(dir) }
}

// shop is a participant: every operation succeeds except reserving more
// than 10 T-shirts, which the business refuses (HTTP 409).
func shop() *httptest.Server {
	return httptest.NewServer(participant.Handler(func(ctx context.Context, b participant.Branch, body []byte) error {
		if b.Op == participant.OpAction && string(body) == `{"qty":100}` {
			return participant.Reject("stock short: have 10, want 100")
		}
		return nil
	}))
}

func ExampleSaga() {
	coord, stop := startCoordinator()
	defer stop()
	p := shop()
	defer p.Close()
	c := client.New(coord)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tx, err := c.NewSaga("").
		Add(p.URL+"/order/create", p.URL+"/order/cancel", `{"qty":2}`).
		Add(p.URL+"/stock/reserve", p.URL+"/stock/release", `{"qty":2}`).
		SubmitAndWait(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("2 T-shirts:", tx.Status)

	tx, _ = c.NewSaga("").
		Add(p.URL+"/order/create", p.URL+"/order/cancel", `{"qty":100}`).
		SubmitAndWait(ctx)
	fmt.Println("100 T-shirts:", tx.Status, "-", tx.Reason)
	// Output:
	// 2 T-shirts: succeeded
	// 100 T-shirts: aborted - branch 1 rejected: participant: rejected: stock short: have 10, want 100
}

func ExampleClient_RunTCC() {
	coord, stop := startCoordinator()
	defer stop()
	p := shop()
	defer p.Close()
	c := client.New(coord)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tx, err := c.RunTCC(ctx, "", client.Options{Timeout: 30 * time.Second}, func(ctx context.Context, t *client.TCC) error {
		if _, err := t.CallBranch(ctx, "stock", `{"qty":2}`, p.URL+"/stock/try", p.URL+"/stock/confirm", p.URL+"/stock/cancel"); err != nil {
			return err
		}
		_, err := t.CallBranch(ctx, "payment", `{"amount":40}`, p.URL+"/pay/try", p.URL+"/pay/confirm", p.URL+"/pay/cancel")
		return err
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tx.Status, len(tx.Branches), "branches confirmed")
	// Output:
	// succeeded 2 branches confirmed
}

func ExampleClient_Get() {
	coord, stop := startCoordinator()
	defer stop()
	p := shop()
	defer p.Close()
	c := client.New(coord)
	ctx := context.Background()

	saga := c.NewSaga("order-42").Add(p.URL+"/a", p.URL+"/c", nil)
	if _, err := saga.Submit(ctx); err != nil { // returns once the saga is durable
		fmt.Println(err)
		return
	}
	tx, _ := c.Wait(ctx, saga.GID())
	for _, b := range tx.Branches {
		fmt.Println("branch", b.ID, b.ForwardOp, b.ForwardStatus, "after", len(b.Attempts), "attempt(s)")
	}
	// Output:
	// branch 1 action done after 1 attempt(s)
}

func ExampleClient_NewThreePC() {
	coord, stop := startCoordinator()
	defer stop()
	p := shop() // answers can-commit, pre-commit and do-commit with 200
	defer p.Close()
	c := client.New(coord)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tx, err := c.NewThreePC("").
		AddBranch("order", p.URL+"/3pc/order", `{"qty":2}`).
		AddBranch("stock", p.URL+"/3pc/stock", `{"qty":2}`).
		WithOptions(client.Options{Timeout: 5 * time.Second}).
		SubmitAndWait(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tx.Mode, tx.Status)
	for _, b := range tx.Branches {
		fmt.Println(b.ID, b.ForwardOp, b.MidOp, b.BackwardOp, b.BackwardStatus)
	}
	// Output:
	// 3pc succeeded
	// order can-commit pre-commit do-commit done
	// stock can-commit pre-commit do-commit done
}

// ExampleMessage_ToTopic sends one message to a topic with two
// subscribers; each becomes a destination of its own, "topic:subscriber".
func ExampleMessage_ToTopic() {
	coord, stop := startCoordinator()
	defer stop()
	p := shop()
	defer p.Close()
	c := client.New(coord)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, name := range []string{"billing", "stock"} {
		if _, _, err := c.Subscribe(ctx, "orders", name, p.URL+"/"+name); err != nil {
			fmt.Println(err)
			return
		}
	}
	tx, err := c.NewMessage("").ToTopic("orders").Payload(`{"order":42}`).SendAndWait(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tx.Status)
	for _, b := range tx.Branches {
		fmt.Println(b.ID, b.ForwardStatus)
	}
	// Output:
	// succeeded
	// orders:billing done
	// orders:stock done
}

// ExampleClient_Subscribe manages subscriptions: Subscribe is idempotent,
// Unsubscribe of an unknown subscription is ErrNotFound.
func ExampleClient_Subscribe() {
	coord, stop := startCoordinator()
	defer stop()
	c := client.New(coord)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, created, _ := c.Subscribe(ctx, "orders", "billing", "http://billing.internal/orders")
	fmt.Println("created:", created)
	_, created, _ = c.Subscribe(ctx, "orders", "billing", "http://billing.internal/orders")
	fmt.Println("created again:", created)
	_, _, _ = c.Subscribe(ctx, "orders", "audit", "nats://127.0.0.1:4222?subject=orders.audit")
	subs, _ := c.Subscriptions(ctx, "orders")
	for _, s := range subs {
		fmt.Println(s.Topic, s.Subscriber, s.Url)
	}
	_ = c.Unsubscribe(ctx, "orders", "audit")
	err := c.Unsubscribe(ctx, "orders", "audit")
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// created: true
	// created again: false
	// orders audit nats://127.0.0.1:4222?subject=orders.audit
	// orders billing http://billing.internal/orders
	// true
}
