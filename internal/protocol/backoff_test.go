package protocol_test

import (
	"math"
	"testing"

	p "github.com/concordtm/concord/internal/protocol"
)

func TestBackoff(t *testing.T) {
	cases := []struct {
		initial, max int64
	}{
		{100, 1000}, {100, 0}, {100, -1}, {1, math.MaxInt64}, {math.MaxInt64 / 3, math.MaxInt64},
	}
	for _, c := range cases {
		prev := int64(0)
		for n := 1; n <= 200; n++ {
			d := p.Backoff(c.initial, c.max, n, "seed")
			// The undelayed value is initial*2^(n-1), capped; the result
			// is in [half of it, all of it).
			base := c.initial
			for i := 1; i < n && (c.max <= 0 || base < c.max) && base <= math.MaxInt64/2; i++ {
				base *= 2
			}
			if c.max > 0 && base > c.max {
				base = c.max
			}
			if d < base/2 || d > base || d <= 0 {
				t.Fatalf("Backoff(%d, %d, %d) = %d, want in [%d, %d]", c.initial, c.max, n, d, base/2, base)
			}
			if base/2 < prev/2 {
				t.Fatalf("Backoff(%d, %d, %d): base went down", c.initial, c.max, n)
			}
			prev = base
			if again := p.Backoff(c.initial, c.max, n, "seed"); again != d {
				t.Fatalf("Backoff is not deterministic: %d then %d", d, again)
			}
		}
	}
	if d := p.Backoff(100, 0, 5, "s"); d < 800 {
		t.Errorf("no cap: Backoff(100, 0, 5) = %d, want at least 800 (doubling)", d)
	}
	if d := p.Backoff(0, 1000, 3, "s"); d != 0 {
		t.Errorf("Backoff(0, ...) = %d, want 0", d)
	}
}
