package msg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// got is one message as a consumer read it back from a broker.
type got struct{ gid, branch, body string }

// TestDeliveryToBrokers sends one transactional message through the real
// coordinator to RabbitMQ, NATS JetStream, Redis Streams and Kafka (kfake,
// in this process) at once, and reads each back with the broker's own
// client: the payload and the Concord headers arrive at every one.
func TestDeliveryToBrokers(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t, "cm")

	// RabbitMQ: a queue, reached through the default exchange.
	conn, err := amqp.Dial(testenv.RabbitMQURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer ch.QueueDelete(name, false, false, false)
	rabbitURL := strings.TrimSuffix(testenv.RabbitMQURL(t), "/") + "/?exchange=&routing_key=" + name

	// NATS JetStream: a stream capturing one subject.
	nc, err := nats.Connect(testenv.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".orders"}})
	if err != nil {
		t.Fatal(err)
	}
	defer js.DeleteStream(context.Background(), name)
	natsURL := testenv.NATSURL(t) + "?subject=" + name + ".orders&stream=" + name

	// Redis Streams.
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer rdb.Close()
	defer rdb.Del(context.Background(), name)
	redisURL := "redis://" + testenv.RedisAddr(t) + "/0?stream=" + name

	// Kafka: franz-go's in-process cluster, listening on loopback.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, name))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kafkaURL := "kafka://" + strings.Join(cluster.ListenAddrs(), ",") + "?topic=" + name

	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	p := newProducer(t)
	m := c.NewMessage("").Payload(`{"event":"order-created"}`).
		ToBranch("rabbit", rabbitURL, nil).ToBranch("nats", natsURL, nil).
		ToBranch("redis", redisURL, nil).ToBranch("kafka", kafkaURL, nil)
	if err := m.DoAndSubmit(ctx, p.srv.URL, p.createOrder); err != nil {
		t.Fatal(err)
	}
	want(t, settle(t, c, m.GID()), "succeeded")

	check := func(where string, g got) {
		t.Helper()
		if g.gid != m.GID() || g.body != `{"event":"order-created"}` || g.branch != where {
			t.Errorf("%s: got gid %q branch %q body %q", where, g.gid, g.branch, g.body)
		}
	}

	d, ok, err := ch.Get(name, true)
	if err != nil || !ok {
		t.Fatalf("rabbitmq: no message (%v)", err)
	}
	check("rabbit", got{fmt.Sprint(d.Headers["Concord-Gid"]), fmt.Sprint(d.Headers["Concord-Branch"]), string(d.Body)})

	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	nm, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	check("nats", got{nm.Headers().Get("Concord-Gid"), nm.Headers().Get("Concord-Branch"), string(nm.Data())})

	xs, err := rdb.XRange(ctx, name, "-", "+").Result()
	if err != nil || len(xs) != 1 {
		t.Fatalf("redis: %d entries (%v), want 1", len(xs), err)
	}
	check("redis", got{field(xs[0].Values, "h:Concord-Gid"), field(xs[0].Values, "h:Concord-Branch"), field(xs[0].Values, "payload")})

	kc, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(name), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fs := kc.PollFetches(fctx)
	if errs := fs.Errors(); len(errs) > 0 || fs.NumRecords() != 1 {
		t.Fatalf("kafka: %d records, errors %v", fs.NumRecords(), errs)
	}
	r := fs.Records()[0]
	hdr := map[string]string{}
	for _, h := range r.Headers {
		hdr[h.Key] = string(h.Value)
	}
	check("kafka", got{hdr["Concord-Gid"], hdr["Concord-Branch"], string(r.Value)})
}

// field returns a Redis stream entry's field (headers are "h:<name>").
func field(v map[string]any, name string) string {
	if s, ok := v[name]; ok {
		return fmt.Sprint(s)
	}
	return ""
}

// A destination the broker does not have (no such stream) is a permanent
// refusal: the message is stuck with the broker's reason, not retried
// forever; a malformed broker URL is refused at the API.
func TestBrokerDestinationErrors(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	missing := testenv.NATSURL(t) + "?subject=nowhere." + testenv.UniqueName(t, "x") + "&stream=" + testenv.UniqueName(t, "nostream")
	m := c.NewMessage("").Payload("x").To(missing).WithOptions(client.Options{MaxAttempts: 2, RetryInitial: 20 * time.Millisecond})
	tx, err := m.SendAndWait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want(t, tx, "stuck")
	if !strings.Contains(tx.StuckReason, "stream") {
		t.Errorf("stuck reason %q does not name the missing stream", tx.StuckReason)
	}
	for _, bad := range []string{"amqp://127.0.0.1:notaport/", "nats://127.0.0.1:4222", "kafka://127.0.0.1:9092", "redis://127.0.0.1:6379/0?stream=s&bogus=1", "ftp://x/y"} {
		_, err := c.NewMessage("").Payload("x").To(bad).Send(t.Context())
		if !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "destinations[0].url") {
			t.Errorf("destination %q: %v, want an invalid-request error naming the field", bad, err)
		}
	}
}
