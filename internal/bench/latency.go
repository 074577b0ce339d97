package bench

import (
	"math"
	"slices"
	"time"
)

// latencies summarises transaction latencies.
type latencies struct {
	p50, p90, p99, max time.Duration
}

// summarise sorts ds in place and returns its percentiles. Every sample is
// kept (8 bytes per transaction), so the percentiles are exact.
func summarise(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	slices.Sort(ds)
	return latencies{
		p50: percentile(ds, 50), p90: percentile(ds, 90), p99: percentile(ds, 99),
		max: ds[len(ds)-1],
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted: the smallest sample that at least p% of the samples do not
// exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// ms converts d to milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}
