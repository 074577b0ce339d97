package broker

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/testenv"
	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitFixture is a durable direct exchange bound to one queue with
// routing key "rk", both unique to the test and deleted afterwards.
type rabbitFixture struct {
	url, exchange, queue string
	ch                   *amqp.Channel
}

func newRabbit(t testing.TB) *rabbitFixture {
	t.Helper()
	u := testenv.RabbitMQURL(t)
	conn, err := amqp.Dial(u)
	if err != nil {
		testenv.Require(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	f := &rabbitFixture{url: u, exchange: testenv.UniqueName(t, "cx"), queue: testenv.UniqueName(t, "cq"), ch: ch}
	if err := ch.ExchangeDeclare(f.exchange, "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(f.queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(f.queue, "rk", f.exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ch.QueueDelete(f.queue, false, false, false)
		ch.ExchangeDelete(f.exchange, false, false)
	})
	return f
}

// dest returns the destination URL of the fixture's exchange.
func (f *rabbitFixture) dest(t testing.TB, routingKey string) string {
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	u.RawQuery = url.Values{"exchange": {f.exchange}, "routing_key": {routingKey}}.Encode()
	return u.String()
}

// consume reads from the queue until want distinct IDs arrived.
func (f *rabbitFixture) consume(t testing.TB, want int) []received {
	t.Helper()
	deliveries, err := f.ch.Consume(f.queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []received
	distinct := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for len(distinct) < want {
		select {
		case d := <-deliveries:
			key, _ := d.Headers[HeaderKey].(string)
			if d.Headers["X-Test"] != "yes" || d.DeliveryMode != amqp.Persistent {
				t.Errorf("message %s: headers %v, delivery mode %d", d.MessageId, d.Headers, d.DeliveryMode)
			}
			got = append(got, received{d.MessageId, key})
			distinct[d.MessageId] = true
		case <-timeout:
			t.Fatalf("got %d of %d messages", len(distinct), want)
		}
	}
	return got
}

func TestRabbitMQPublish(t *testing.T) {
	f := newRabbit(t)
	p := openTest(t, f.dest(t, "rk"), nil)
	msgs := testMessages("m", 300, 7)
	publishAll(t, p, msgs)
	checkDelivery(t, msgs, f.consume(t, len(msgs)))
}

func TestRabbitMQMissingExchange(t *testing.T) {
	u := testenv.RabbitMQURL(t)
	d := mustParse(t, u+"?exchange="+testenv.UniqueName(t, "missing"))
	_, err := Open(t.Context(), d)
	if !IsPermanent(err) {
		t.Fatalf("Open with a missing exchange = %v, want a permanent error", err)
	}
}

func TestRabbitMQUnroutable(t *testing.T) {
	f := newRabbit(t)
	p := openTest(t, f.dest(t, ""), nil) // routing key = message key
	err := p.Publish(t.Context(), Message{ID: "lost", Key: "nobody-listens"})
	if !IsPermanent(err) || !errors.Is(err, ErrUnroutable) {
		t.Fatalf("unroutable publish = %v, want ErrUnroutable", err)
	}
	// The channel still works, and the return was not charged to others.
	msgs := []Message{{ID: "ok", Key: "rk", Headers: map[string]string{"X-Test": "yes"}}}
	if err := p.PublishBatch(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	checkDelivery(t, msgs, f.consume(t, 1))
}

func TestRabbitMQReconnect(t *testing.T) {
	f := newRabbit(t)
	var c cutter
	p := openTest(t, f.dest(t, "rk"), c.dial)
	msgs := testMessages("r", 20, 2)
	for i, m := range msgs {
		if i%5 == 4 {
			c.cut()
		}
		publishEventually(t, p, m)
	}
	checkDelivery(t, msgs, f.consume(t, len(msgs)))
}
