package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/store"
)

// benchDataSize is the size of Data in benchmark records, about what the
// runtime writes for a transaction with a handful of branches.
const benchDataSize = 1024

// RunBenchmarks runs the store benchmarks against the stores returned by
// open; each sub-benchmark opens its own store. Every benchmark reports
// records/s; Workload also reports Commit latency percentiles.
func RunBenchmarks(b *testing.B, open func(b *testing.B) store.Store) {
	b.Helper()
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("Commit/batch=%d", n), func(b *testing.B) {
			benchCommit(b, openBenchStore(b, open), n)
		})
	}
	b.Run("Get", func(b *testing.B) { benchGet(b, openBenchStore(b, open)) })
	b.Run("CommitParallel", func(b *testing.B) { benchCommitParallel(b, openBenchStore(b, open)) })
	b.Run("Workload", func(b *testing.B) { BenchWorkload(b, openBenchStore(b, open)) })
}

// openBenchStore opens a store and closes it when b ends.
func openBenchStore(b *testing.B, open func(b *testing.B) store.Store) store.Store {
	b.Helper()
	s := open(b)
	b.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.Errorf("Close: %v", err)
		}
	})
	return s
}

// benchRecord returns a new unfinished record with ~1 KiB of Data.
func benchRecord(gid string, now int64, data []byte) store.Record {
	return store.Record{GID: gid, Mode: "saga", Status: "running", CreatedAt: now, UpdatedAt: now, Data: data}
}

func benchCommit(b *testing.B, s store.Store, size int) {
	data := randomData(rand.New(rand.NewPCG(1, 1)), benchDataSize)
	batch := make([]store.Record, size)
	ctx := b.Context()
	b.SetBytes(int64(size * benchDataSize))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for j := range batch {
			batch[j] = benchRecord(fmt.Sprintf("bench-%010d", i), int64(i), data)
			i++
		}
		if err := s.Commit(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
}

func benchGet(b *testing.B, s store.Store) {
	const n = 1000
	data := randomData(rand.New(rand.NewPCG(2, 2)), benchDataSize)
	for i := 0; i < n; i += 100 {
		batch := make([]store.Record, 100)
		for j := range batch {
			batch[j] = benchRecord(fmt.Sprintf("get-%06d", i+j), int64(i+j), data)
		}
		commit(b, s, batch...)
	}
	gids := make([]string, n)
	for i := range gids {
		gids[i] = fmt.Sprintf("get-%06d", i)
	}
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, gids[i%n]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
}

// benchCommitParallel has many goroutines each commit its own one-record
// batch, as a runtime without group commit would.
func benchCommitParallel(b *testing.B, s store.Store) {
	data := randomData(rand.New(rand.NewPCG(3, 3)), benchDataSize)
	var next atomic.Int64
	ctx := b.Context()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		batch := make([]store.Record, 1)
		for pb.Next() {
			n := next.Add(1)
			batch[0] = benchRecord(fmt.Sprintf("par-%010d", n), n, data)
			if err := s.Commit(ctx, batch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(next.Load())/b.Elapsed().Seconds(), "records/s")
}

// Workload sizes: a batch the runtime's group commit typically hands over,
// the number of transactions in flight, and how many times each is
// rewritten before it finishes.
const (
	workloadBatch  = 50
	workloadLive   = 500
	workloadWrites = 4
)

// BenchWorkload mimics the coordinator runtime: one committer goroutine
// commits batches of 50 records of ~1 KiB, each rewriting a live
// transaction with a new status until its fourth write marks it finished
// and a new transaction takes its place. One op is one batch. It reports
// records/s and the p50, p99 and max Commit latency.
func BenchWorkload(b *testing.B, s store.Store) {
	rng := rand.New(rand.NewPCG(4, 4))
	data := randomData(rng, benchDataSize)
	statuses := [workloadWrites]string{"prepared", "running", "committing", "succeeded"}
	type txn struct {
		rec    store.Record
		writes int
	}
	live := make([]txn, workloadLive)
	created := 0
	fresh := func(now int64) txn {
		created++
		return txn{rec: benchRecord(fmt.Sprintf("wl-%010d", created), now, data)}
	}
	for i := range live {
		// Spread the live set over the life cycle, so finishes are steady.
		live[i] = fresh(0)
		live[i].writes = i % workloadWrites
	}
	batch := make([]store.Record, workloadBatch)
	var lat []time.Duration
	ctx := b.Context()
	clock, next := int64(1), 0
	b.SetBytes(workloadBatch * benchDataSize)
	b.ReportAllocs()
	for b.Loop() {
		for j := range batch {
			t := &live[next]
			next = (next + 1) % workloadLive
			clock++
			t.rec.Status = statuses[t.writes]
			t.rec.Finished = t.writes == workloadWrites-1
			t.rec.UpdatedAt = clock
			t.rec.Data = data
			batch[j] = t.rec
			t.writes++
			if t.rec.Finished {
				*t = fresh(clock)
			}
		}
		start := time.Now()
		if err := s.Commit(ctx, batch); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(len(lat)*workloadBatch)/b.Elapsed().Seconds(), "records/s")
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
}
