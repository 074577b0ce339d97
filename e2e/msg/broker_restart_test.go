package msg

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/broker"
	"github.com/concordtm/concord/internal/testenv/daemon"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// brokerDown is how long a killed broker stays down before its restart:
// longer than the branch timeout below, so that publishes in flight (which
// nats.go buffers while it reconnects) time out and are retried.
const brokerDown = 1500 * time.Millisecond

// TestBrokerServerRestartDuringDelivery has the real coordinator deliver a
// stream of messages, each to a NATS JetStream stream and to a Redis
// stream, while first the nats-server and then the redis-server (private
// processes, with their data on disk) are killed with SIGKILL and started
// again on the same data. Every message ends succeeded and is in each
// broker exactly once: the coordinator retried what was in flight with
// the same message ID, JetStream dropped the duplicates by Nats-Msg-Id
// (its duplicate window survives the restart) and the Redis dedup key,
// written with the entry in one script and fsynced with it, did the same.
func TestBrokerServerRestartDuringDelivery(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	nd, rd := daemon.NATS(t), daemon.Redis(t)

	nc, err := nats.Connect("nats://"+nd.Addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "orders", Subjects: []string{"orders.created"},
		Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	natsURL := "nats://" + nd.Addr + "?subject=orders.created&stream=orders"
	redisURL := "redis://" + rd.Addr + "/0?stream=orders&dedup_ttl=10m"

	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	opts := client.Options{BranchTimeout: 500 * time.Millisecond, RetryInitial: 50 * time.Millisecond, RetryMax: 400 * time.Millisecond,
		MaxAttempts: 1000, MaxTotalAttempts: 2000}

	// A third of the messages is sent and, with its deliveries in flight,
	// the nats-server is killed; the second third is sent while it is down
	// and the redis-server is killed when it is back; the last third is
	// sent while Redis is down. Every phase's deliveries hit a dead broker.
	const n = 150
	var gids []string
	send := func(count int) {
		t.Helper()
		for range count {
			i := len(gids)
			m := c.NewMessage(newGID(fmt.Sprintf("br%03d", i))).Payload(fmt.Sprintf("order %d", i)).
				ToBranch("nats", natsURL, nil).ToBranch("redis", redisURL, nil).WithOptions(opts)
			if _, err := m.Send(ctx); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			gids = append(gids, m.GID())
		}
	}
	start := time.Now()
	send(n / 3)
	downWhile(t, ctx, nd, func() { send(n / 3) })
	downWhile(t, ctx, rd, func() { send(n - 2*(n/3)) })
	retried := map[string]int{} // branch -> messages delivered more than once
	for _, g := range gids {
		tx, err := c.Wait(ctx, g)
		if err != nil {
			t.Fatalf("wait %s: %v", g, err)
		}
		want(t, tx, "succeeded")
		for _, b := range tx.Branches {
			if len(b.Attempts) > 1 {
				retried[b.ID]++
			}
		}
	}
	t.Logf("%d messages delivered to both brokers across their restarts in %v; deliveries retried: %v",
		n, time.Since(start).Round(time.Millisecond), retried)
	// The restarts did hit deliveries: some failed and were retried.
	if retried["nats"] == 0 || retried["redis"] == 0 {
		t.Errorf("retried deliveries %v: a broker restart went unnoticed, the test proves nothing", retried)
	}

	// JetStream: every message once, by its message ID gid/branch.
	stream, err := js.Stream(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inNATS := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("nats message %d: %v", seq, err)
		}
		inNATS[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	// Redis: every message once, by the entry's id field.
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr})
	defer rdb.Close()
	xs, err := rdb.XRange(ctx, "orders", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	inRedis := map[string]int{}
	for _, x := range xs {
		inRedis[field(x.Values, broker.FieldID)]++
	}
	for _, g := range gids {
		if k := inNATS[g+"/nats"]; k != 1 {
			t.Errorf("%s is in the NATS stream %d times, want 1", g, k)
		}
		if k := inRedis[g+"/redis"]; k != 1 {
			t.Errorf("%s is in the Redis stream %d times, want 1", g, k)
		}
	}
	if len(inNATS) != n || info.State.Msgs != n || len(inRedis) != n || len(xs) != n {
		t.Errorf("NATS holds %d messages (%d distinct), Redis %d entries (%d distinct); want %d each",
			info.State.Msgs, len(inNATS), len(xs), len(inRedis), n)
	}
}

// downWhile kills d, runs during (which should find d down), waits until
// d has been down for brokerDown, and starts it again on its data.
func downWhile(t *testing.T, ctx context.Context, d *daemon.Daemon, during func()) {
	t.Helper()
	d.Kill()
	down := time.NewTimer(brokerDown)
	defer down.Stop()
	during()
	select {
	case <-down.C:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	d.Start()
}

// TestRabbitMQServerRestartDuringDelivery is the same with a private
// RabbitMQ node (durable queue, persistent messages, publisher confirms)
// killed with SIGKILL and restarted on its data. RabbitMQ does not
// deduplicate: a message whose confirm was lost with the node is
// published again, so the queue holds every message at least once, each
// copy with the message-id gid/branch, and a consumer's inbox keyed by it
// applies each once. Nothing confirmed is lost.
func TestRabbitMQServerRestartDuringDelivery(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	rq := daemon.RabbitMQ(t)
	amqpURL := "amqp://guest:guest@" + rq.Addr + "/"
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("orders", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	dest := amqpURL + "?exchange=&routing_key=orders"

	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	opts := client.Options{BranchTimeout: 500 * time.Millisecond, RetryInitial: 50 * time.Millisecond, RetryMax: 400 * time.Millisecond,
		MaxAttempts: 1000, MaxTotalAttempts: 2000}
	// A third is sent and, with its deliveries in flight, the node is
	// killed; a third is sent while it is down (its boot takes seconds),
	// the last third once it is back.
	const n = 90
	var gids []string
	send := func(count int) {
		t.Helper()
		for range count {
			i := len(gids)
			m := c.NewMessage(newGID(fmt.Sprintf("rq%03d", i))).Payload(fmt.Sprintf("order %d", i)).
				ToBranch("rabbit", dest, nil).WithOptions(opts)
			if _, err := m.Send(ctx); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			gids = append(gids, m.GID())
		}
	}
	send(n / 3)
	start := time.Now()
	downWhile(t, ctx, rq, func() { send(n / 3) })
	t.Logf("RabbitMQ down for %v", time.Since(start).Round(time.Millisecond))
	send(n - 2*(n/3))
	retried := 0
	for _, g := range gids {
		tx, err := c.Wait(ctx, g)
		if err != nil {
			if tx, gerr := c.Get(t.Context(), g); gerr == nil {
				for _, b := range tx.Branches {
					for _, a := range b.Attempts {
						t.Logf("%s branch %s attempt %d at %s: %s %s (%v)", g, b.ID, a.Number, a.StartedAt.Format(time.RFC3339Nano), a.Outcome, a.Error, a.Duration)
					}
				}
				t.Logf("status %s", tx.Status)
			}
			dumpGoroutines(t, srv)
			t.Fatalf("wait %s: %v", g, err)
		}
		want(t, tx, "succeeded")
		if len(tx.Branches[0].Attempts) > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Fatal("no delivery was retried: the restart went unnoticed, the test proves nothing")
	}

	conn, err = amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	copies := map[string]int{}
	total := 0
	for {
		d, ok, err := ch.Get("orders", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		copies[d.MessageId]++
		total++
	}
	for _, g := range gids {
		if copies[g+"/rabbit"] == 0 {
			t.Errorf("%s is not in the queue: a confirmed message was lost", g)
		}
	}
	if len(copies) != n {
		t.Errorf("the queue holds %d distinct messages, want %d", len(copies), n)
	}
	t.Logf("%d messages, %d deliveries retried; the queue holds %d copies, %d of them duplicates (a consumer drops them by message-id)",
		n, retried, total, total-len(copies))
}

// dumpGoroutines makes the coordinator print its goroutines (SIGQUIT) and
// logs them, to show where a delivery hangs.
func dumpGoroutines(t *testing.T, srv *proc.Server) {
	syscall.Kill(srv.Pid(), syscall.SIGQUIT)
	select {
	case <-srv.Exited():
	case <-time.After(10 * time.Second):
	}
	t.Logf("coordinator goroutines:\n%s", srv.Stderr())
}
