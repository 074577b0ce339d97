package broker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/concordtm/concord/internal/testenv/daemon"
)

// newKafka starts an in-process Kafka cluster (no Kafka server is
// available in CI) with topic "orders" of 3 partitions.
func newKafka(t testing.TB) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

func consumeKafka(t testing.TB, addrs, topic string, want int) []received {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(addrs, ",")...),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []received
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		fs := cl.PollFetches(t.Context())
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var id string
			for _, h := range r.Headers {
				if h.Key == HeaderID {
					id = string(h.Value)
				}
			}
			got = append(got, received{id, string(r.Key)})
		})
	}
	return got
}

func TestKafkaPublish(t *testing.T) {
	addrs := newKafka(t)
	p := openTest(t, "kafka://"+addrs+"?topic=orders", nil)
	msgs := testMessages("m", 300, 7)
	publishAll(t, p, msgs)
	got := consumeKafka(t, addrs, "orders", len(msgs))
	if dups := checkDelivery(t, msgs, got); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

func TestKafkaMissingTopic(t *testing.T) {
	addrs := newKafka(t)
	_, err := Open(t.Context(), mustParse(t, "kafka://"+addrs+"?topic=missing"))
	if !IsPermanent(err) {
		t.Fatalf("Open with a missing topic = %v, want a permanent error", err)
	}
}

func TestKafkaTooLarge(t *testing.T) {
	addrs := newKafka(t)
	p := openTest(t, "kafka://"+addrs+"?topic=orders", nil)
	err := p.Publish(t.Context(), Message{ID: "big", Payload: make([]byte, 4<<20)})
	if !IsPermanent(err) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized publish = %v, want ErrTooLarge", err)
	}
}

func TestKafkaReconnect(t *testing.T) {
	addrs := newKafka(t)
	var c cutter
	p := openTest(t, "kafka://"+addrs+"?topic=orders", c.dial)
	msgs := testMessages("r", 20, 2)
	for i, m := range msgs {
		if i%5 == 4 {
			c.cut()
		}
		publishEventually(t, p, m)
	}
	checkDelivery(t, msgs, consumeKafka(t, addrs, "orders", len(msgs)))
}

// A produce request the broker applied but whose response never came back
// (the connection died) is retried by franz-go's idempotent producer with
// the same producer id and sequence numbers; the broker recognizes the
// retry and keeps one copy. Publish reports success and the topic holds
// every record once.
func TestKafkaLostProduceResponseIsNotDuplicated(t *testing.T) {
	k := daemon.NewKafka(t, 3, "orders")
	p := openTest(t, "kafka://"+k.Addrs+"?topic=orders", nil)
	msgs := testMessages("lost", 40, 4)
	// One: franz-go waits out its metadata minimum age (5s) before the
	// retry, so each lost response costs that much.
	k.DropProduceResponses(1)
	publishAll(t, p, msgs)
	produces, dropped := k.Stats()
	if dropped != 1 || produces < 2 {
		t.Fatalf("%d produce requests, %d responses dropped: the fault was not injected", produces, dropped)
	}
	if n := k.Records(t, "orders"); n != int64(len(msgs)) {
		t.Errorf("the topic holds %d records for %d messages: a retry was appended twice", n, len(msgs))
	}
	if dups := checkDelivery(t, msgs, consumeKafka(t, k.Addrs, "orders", len(msgs))); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}
