package protocol

import (
	"hash/fnv"
	"math"
)

// Backoff returns the delay before retry number n (n >= 1): exponential from
// initial, capped at max, with "equal jitter" (half fixed, half spread). The
// jitter is a hash of seed and n, so it is deterministic for replay yet
// spreads different transactions apart.
func Backoff(initial, max int64, n int, seed string) int64 {
	if initial <= 0 {
		return 0
	}
	d := initial
	// max <= 0 means no cap; stop doubling before d could overflow.
	for i := 1; i < n && (max <= 0 || d < max) && d <= math.MaxInt64/2; i++ {
		d *= 2
	}
	if max > 0 && d > max {
		d = max
	}
	half := d / 2
	if half == 0 {
		return d
	}
	h := fnv.New64a()
	h.Write([]byte(seed))
	h.Write([]byte{byte(n), byte(n >> 8)})
	return half + int64(h.Sum64()%uint64(half))
}
