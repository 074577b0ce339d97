package outbox

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/broker"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitQueue declares a queue unique to the test, deleted afterwards, and
// returns a destination that routes to it through the default exchange.
func rabbitQueue(t testing.TB) (dest string, ch *amqp.Channel) {
	t.Helper()
	u := testenv.RabbitMQURL(t)
	conn, err := amqp.Dial(u)
	if err != nil {
		testenv.Require(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { conn.Close() })
	if ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	q := testenv.UniqueName(t, "coq")
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.QueueDelete(q, false, false, false) })
	pu, _ := url.Parse(u)
	pu.RawQuery = url.Values{"routing_key": {q}}.Encode()
	return pu.String(), ch
}

// natsStream creates a stream unique to the test and returns a destination
// for its subject.
func natsStream(t testing.TB) (dest string, js jetstream.JetStream, stream string) {
	t.Helper()
	u := testenv.NATSURL(t)
	nc, err := nats.Connect(u)
	if err != nil {
		testenv.Require(t, "NATS", err)
	}
	t.Cleanup(nc.Close)
	if js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	stream = testenv.UniqueName(t, "cos")
	subject := "concord.outbox." + stream
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: stream, Subjects: []string{subject}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.DeleteStream(context.Background(), stream) })
	return u + "?subject=" + subject + "&stream=" + stream, js, stream
}

func openPublisher(t testing.TB, dest string) broker.Publisher {
	t.Helper()
	d, err := broker.ParseDestination(dest)
	if err != nil {
		t.Fatal(err)
	}
	p, err := broker.Open(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func pgBackend() backend { return backends[1] }

// relayAll writes n messages over 5 keys to a PostgreSQL outbox and relays
// them with a running relay into p.
func relayAll(t *testing.T, p broker.Publisher, n int) {
	t.Helper()
	o, db := newOutbox(t, pgBackend())
	for i := 0; i < n; i += 10 {
		var batch []Message
		for j := i; j < min(i+10, n); j++ {
			batch = append(batch, msg("k"+strconv.Itoa(j%5), j))
		}
		write(t, o, db, true, batch...)
	}
	write(t, o, db, false, msg("k0", 9999)) // rolled back: never published
	drain(t, o.NewRelay(db, PublisherSink(p), RelayConfig{BatchSize: 50}))
}

func TestEndToEndPostgresToRabbitMQ(t *testing.T) {
	dest, ch := rabbitQueue(t)
	const n = 200
	relayAll(t, openPublisher(t, dest), n)
	var rec recorder
	pu, _ := url.Parse(dest)
	deliveries, err := ch.Consume(pu.Query().Get("routing_key"), "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for len(rec.ids()) < n {
		select {
		case d := <-deliveries:
			key, _ := d.Headers[broker.HeaderKey].(string)
			rec.Send(t.Context(), []Message{{ID: d.MessageId, Key: key}})
		case <-timeout:
			t.Fatalf("consumed %d of %d", len(rec.ids()), n)
		}
	}
	rec.checkOrder(t)
	if rec.ids()["k0/9999"] != 0 {
		t.Error("a message from a rolled-back transaction was published")
	}
}

func TestEndToEndPostgresToNATS(t *testing.T) {
	dest, js, stream := natsStream(t)
	const n = 200
	relayAll(t, openPublisher(t, dest), n)
	s, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		rec.Send(t.Context(), []Message{{ID: m.Header.Get(jetstream.MsgIDHeader), Key: m.Header.Get(broker.HeaderKey)}})
	}
	if ids := rec.ids(); len(ids) != n || len(rec.got) != n {
		t.Errorf("stream holds %d messages (%d distinct), want %d", len(rec.got), len(ids), n)
	}
	rec.checkOrder(t)
}

// benchRelay measures outbox-to-broker throughput: b.N messages written to
// a PostgreSQL outbox beforehand, then relayed (batches of 100, one round of
// publisher confirms per batch, one delete per batch).
func benchRelay(b *testing.B, dest string) {
	p := openPublisher(b, dest)
	o, db := newOutbox(b, pgBackend())
	tx, err := db.BeginTx(b.Context(), nil)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	for i := range b.N {
		if _, err := o.Write(b.Context(), tx, Message{Key: "k" + strconv.Itoa(i%16), Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	r := o.NewRelay(db, PublisherSink(p), RelayConfig{BatchSize: 100})
	b.ResetTimer()
	drain(b, r)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkRelayRabbitMQ(b *testing.B) {
	dest, _ := rabbitQueue(b)
	benchRelay(b, dest)
}

func BenchmarkRelayNATS(b *testing.B) {
	dest, _, _ := natsStream(b)
	benchRelay(b, dest)
}
