package memstore_test

import (
	"time"

	"testing"

	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/memstore"
	"github.com/concordtm/concord/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memstore.New() })
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, func(*testing.B) store.Store { return memstore.New() })
}

// TestLeaseFakeClock expires a lease by moving the injected clock, with no
// waiting.
func TestLeaseFakeClock(t *testing.T) {
	s := memstore.New()
	defer s.Close()
	now := time.Unix(1_700_000_000, 0)
	s.SetClock(func() time.Time { return now })
	ctx := t.Context()
	if err := s.Heartbeat(ctx, "a", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, []store.Record{{GID: "g", Owner: "a", Version: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{{9 * time.Second, 0}, {999 * time.Millisecond, 0}, {time.Millisecond, 1}} {
		now = now.Add(step.advance)
		rs, err := s.Claim(ctx, "b", 10)
		if err != nil || len(rs) != step.want {
			t.Fatalf("Claim at +%v: %d records, %v; want %d", step.advance, len(rs), err, step.want)
		}
	}
	if r, _ := s.Get(ctx, "g"); r.Owner != "b" || r.Version != 2 {
		t.Fatalf("after the claim: Owner %q Version %d, want b and 2", r.Owner, r.Version)
	}
}
