package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/redisstore"
	"github.com/concordtm/concord/internal/store/storetest"
	"github.com/concordtm/concord/internal/testenv"
)

// openTest opens a store on a fresh namespace of the test Redis and deletes
// its keys when tb ends.
func openTest(tb testing.TB) *redisstore.Store {
	tb.Helper()
	url := "redis://" + testenv.RedisAddr(tb) + "/0"
	opts := redisstore.Options{Namespace: testenv.UniqueName(tb, "cst")}
	s, err := redisstore.Open(tb.Context(), url, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c, err := redisstore.Open(context.Background(), url, opts)
		if err != nil {
			tb.Errorf("cleanup: %v", err)
			return
		}
		defer c.Close()
		if err := c.Drop(context.Background()); err != nil {
			tb.Errorf("cleanup: %v", err)
		}
	})
	if err := s.Migrate(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t) })
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store { return openTest(b) })
}

func TestUnreachable(t *testing.T) {
	_, err := redisstore.Open(t.Context(), "redis://127.0.0.1:1/0?dial_timeout=2s", redisstore.Options{})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Open of a closed port: %v; want store.ErrUnavailable naming the address", err)
	}
}
