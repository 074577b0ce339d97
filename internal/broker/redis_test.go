package broker

import (
	"context"
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/redis/go-redis/v9"
)

type redisFixture struct {
	addr, stream string
	client       *redis.Client
}

func newRedis(t testing.TB) *redisFixture {
	t.Helper()
	addr := testenv.RedisAddr(t)
	f := &redisFixture{addr: addr, stream: testenv.UniqueName(t, "concord_stream"), client: redis.NewClient(&redis.Options{Addr: addr})}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := f.client.Keys(ctx, DedupKey(f.stream, "*")).Result()
		f.client.Del(ctx, append(keys, f.stream)...)
		f.client.Close()
	})
	return f
}

func (f *redisFixture) consume(t testing.TB) []received {
	t.Helper()
	entries, err := f.client.XRange(t.Context(), f.stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]received, len(entries))
	for i, e := range entries {
		got[i] = received{e.Values[FieldID].(string), e.Values[FieldKey].(string)}
		if e.Values[HeaderFieldPrefix+"X-Test"] != "yes" {
			t.Errorf("entry %s: %v", e.ID, e.Values)
		}
	}
	return got
}

func TestRedisPublish(t *testing.T) {
	f := newRedis(t)
	p := openTest(t, "redis://"+f.addr+"?stream="+f.stream, nil)
	msgs := testMessages("m", 300, 7)
	publishAll(t, p, msgs)
	checkDelivery(t, msgs, f.consume(t))
}

func TestRedisDedup(t *testing.T) {
	f := newRedis(t)
	p := openTest(t, "redis://"+f.addr+"?stream="+f.stream+"&dedup_ttl=1m&maxlen=100000", nil)
	msgs := testMessages("m", 100, 3)
	publishAll(t, p, msgs)
	publishAll(t, p, msgs)
	got := f.consume(t)
	if dups := checkDelivery(t, msgs, got); dups != 0 {
		t.Errorf("%d duplicates in the stream", dups)
	}
	ttl, err := f.client.PTTL(t.Context(), DedupKey(f.stream, msgs[0].ID)).Result()
	if err != nil || ttl <= 0 {
		t.Errorf("dedup key TTL = %v, %v; want a positive TTL", ttl, err)
	}
}

func TestRedisWrongType(t *testing.T) {
	f := newRedis(t)
	if err := f.client.Set(t.Context(), f.stream, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), mustParse(t, "redis://"+f.addr+"?stream="+f.stream))
	if !IsPermanent(err) || !strings.Contains(err.Error(), "not a stream") {
		t.Fatalf("Open on a string key = %v, want a permanent error", err)
	}
}

func TestRedisReconnect(t *testing.T) {
	f := newRedis(t)
	var c cutter
	p := openTest(t, "redis://"+f.addr+"?stream="+f.stream, c.dial)
	msgs := testMessages("r", 20, 2)
	for i, m := range msgs {
		if i%5 == 4 {
			c.cut()
		}
		publishEventually(t, p, m)
	}
	checkDelivery(t, msgs, f.consume(t))
}
