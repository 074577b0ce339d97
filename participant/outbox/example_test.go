package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/server"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/outbox"
)

// startCoordinator runs a real coordinator in-process on a temporary
// embedded store, for the example. In production it is `concord serve`.
func startCoordinator(dir string) (url string, stop func()) {
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", filepath.Join(dir, "coordinator")
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		server.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(addr string) { ready <- addr })
	}()
	return "http://" + <-ready, func() { cancel(); <-done }
}

// A service writes "order created" to its outbox in the order's local
// transaction; the relay hands it to the coordinator, which delivers it to
// the billing service.
func ExampleCoordinatorSink() {
	dir, _ := os.MkdirTemp("", "concord-outbox-example-")
	defer os.RemoveAll(dir)
	coord, stop := startCoordinator(dir)
	defer stop()
	billing := httptest.NewServer(participant.Handler(func(ctx context.Context, b participant.Branch, body []byte) error {
		fmt.Printf("billing: %s (Concord-Gid %s)\n", body, b.GID)
		return nil
	}))
	defer billing.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	db, _ := sql.Open("sqlite", "file:"+filepath.Join(dir, "orders.db"))
	defer db.Close()
	ob, _ := outbox.New(participant.SQLite)
	_ = ob.Migrate(ctx, db)
	tx, _ := db.BeginTx(ctx, nil)
	// ... the order's own rows, through tx ...
	_, _ = ob.Write(ctx, tx, outbox.Message{ID: "order-42-created", Key: "order-42", Payload: []byte(`{"order":42}`)})
	_ = tx.Commit()

	c := client.New(coord)
	sink, err := outbox.CoordinatorSink(c, outbox.CoordinatorConfig{
		Namespace: "shop", Destinations: []string{billing.URL}, WaitDelivered: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	relay := ob.NewRelay(db, sink, outbox.RelayConfig{})
	n, err := relay.RunOnce(ctx) // in a service: go relay.Run(ctx)
	fmt.Println("relayed:", n, err)
	msg, _ := c.Get(ctx, outbox.MessageGID("shop", "order-42-created"))
	fmt.Println("message:", msg.GID, msg.Status)
	// Output:
	// billing: {"order":42} (Concord-Gid shop:order-42-created)
	// relayed: 1 <nil>
	// message: shop:order-42-created succeeded
}
