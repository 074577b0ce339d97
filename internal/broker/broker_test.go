package broker

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// received is one message as a test consumer saw it.
type received struct{ ID, Key string }

// cutter dials real connections and can cut them all, which the client
// sees as a network failure.
type cutter struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (c *cutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := defaultDial(ctx, network, addr)
	if err == nil {
		c.mu.Lock()
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
	}
	return conn, err
}

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// testMessages returns n messages spread over keys keys; message i has key
// "k<i%keys>" and ID prefix-i.
func testMessages(prefix string, n, keys int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{
			ID:      prefix + "-" + strconv.Itoa(i),
			Key:     "k" + strconv.Itoa(i%keys),
			Payload: []byte("payload " + strconv.Itoa(i)),
			Headers: map[string]string{"X-Test": "yes"},
		}
	}
	return msgs
}

// publishAll publishes the first half of msgs one by one and the rest in
// batches of 16.
func publishAll(t testing.TB, p BatchPublisher, msgs []Message) {
	t.Helper()
	half := len(msgs) / 2
	for _, m := range msgs[:half] {
		if err := p.Publish(t.Context(), m); err != nil {
			t.Fatalf("Publish %s: %v", m.ID, err)
		}
	}
	for i := half; i < len(msgs); i += 16 {
		if err := p.PublishBatch(t.Context(), msgs[i:min(i+16, len(msgs))]); err != nil {
			t.Fatalf("PublishBatch at %d: %v", i, err)
		}
	}
}

// checkDelivery checks that every message in sent was received and that,
// per key, the first deliveries came in publish order. It returns the
// number of duplicates.
func checkDelivery(t testing.TB, sent []Message, got []received) (dups int) {
	t.Helper()
	index := make(map[string]int, len(sent))
	for i, m := range sent {
		index[m.ID] = i
	}
	seen := make(map[string]bool)
	last := make(map[string]int)
	for _, r := range got {
		i, ok := index[r.ID]
		if !ok {
			t.Errorf("received unknown message %q", r.ID)
			continue
		}
		if seen[r.ID] {
			dups++
			continue
		}
		seen[r.ID] = true
		if r.Key != sent[i].Key {
			t.Errorf("message %s: key %q, want %q", r.ID, r.Key, sent[i].Key)
		}
		if prev, ok := last[r.Key]; ok && prev > i {
			t.Errorf("key %s: message %d arrived after %d", r.Key, i, prev)
		}
		last[r.Key] = i
	}
	for _, m := range sent {
		if !seen[m.ID] {
			t.Errorf("message %s never arrived", m.ID)
		}
	}
	return dups
}

func mustParse(t testing.TB, raw string) Destination {
	t.Helper()
	d, err := ParseDestination(raw)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func openTest(t testing.TB, raw string, dial dialFunc) BatchPublisher {
	t.Helper()
	if dial == nil {
		dial = defaultDial
	}
	p, err := open(t.Context(), mustParse(t, raw), dial)
	if err != nil {
		t.Fatalf("open %s: %v", raw, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

// publishEventually retries m until it is confirmed, failing on permanent
// errors; it returns the number of failed attempts.
func publishEventually(t testing.TB, p Publisher, m Message) int {
	t.Helper()
	for attempt := 0; ; attempt++ {
		// A message written to a socket that just died is lost without an
		// error; only the confirm timeout tells. Keep it short here.
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		err := p.Publish(ctx, m)
		cancel()
		if err == nil {
			return attempt
		}
		if IsPermanent(err) || attempt == 20 {
			t.Fatalf("publish %s (attempt %d): %v", m.ID, attempt, err)
		}
		t.Logf("publish %s attempt %d: %v (retrying)", m.ID, attempt, err)
	}
}
