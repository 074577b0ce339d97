package bench

import (
	"crypto/rand"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/server"
	"github.com/concordtm/concord/internal/store/embedded"
)

// benchWorkers is how many transactions the Go benchmarks keep in flight,
// whatever GOMAXPROCS is: the concurrency-50 figure of docs/performance.md.
const benchWorkers = 50

// commitStats counts the coordinator's group commits.
type commitStats struct {
	commits, records atomic.Int64
	busy             atomic.Int64 // nanoseconds spent in Commit
}

func (s *commitStats) observe(records int, d time.Duration, _ error) {
	s.commits.Add(1)
	s.records.Add(int64(records))
	s.busy.Add(int64(d))
}

// report adds records per commit and the mean commit time to b's output:
// they tell whether the store's fsyncs are what bounds the run.
func (s *commitStats) report(b *testing.B) {
	if n := s.commits.Load(); n > 0 {
		b.ReportMetric(float64(s.records.Load())/float64(n), "records/commit")
		b.ReportMetric(float64(s.busy.Load())/float64(n)/1e6, "ms/commit")
	}
}

// inProcess serves the API of a coordinator over the embedded store in a
// temporary directory, in this process, and returns its URL.
func inProcess(b *testing.B, engine string, stats *commitStats) string {
	b.Helper()
	st, err := embedded.Open(b.TempDir(), embedded.Options{Engine: engine})
	if err != nil {
		b.Fatal(err)
	}
	coord := coordinator.New(coordinator.Config{Listener: coordinator.Listener{GroupCommit: stats.observe}}, st)
	if err := coord.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(server.Handler(server.NewService(coord, server.Limits{}), ""))
	b.Cleanup(func() {
		srv.Close()
		coord.Close()
		st.Close()
	})
	return srv.URL
}

// benchmarkEndToEnd runs transactions of mode through the HTTP API, with
// benchWorkers in flight, once per embedded engine (the default first),
// and reports transactions per second.
func benchmarkEndToEnd(b *testing.B, mode string) {
	for _, engine := range []string{embedded.DefaultEngine, otherEngine()} {
		b.Run(engine, func(b *testing.B) { benchmarkEngine(b, mode, engine) })
	}
}

func otherEngine() string {
	if embedded.DefaultEngine == embedded.EngineBolt {
		return embedded.EnginePebble
	}
	return embedded.EngineBolt
}

func benchmarkEngine(b *testing.B, mode, engine string) {
	var stats commitStats
	url := inProcess(b, engine, &stats)
	p, err := startParticipants()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.close)
	var seq atomic.Int64
	prefix := "gobench-" + strings.ToLower(rand.Text()[:8]) + "-"
	txn := newTxnFunc(mode, client.New(url), p, func() string { return prefix + strconv.FormatInt(seq.Add(1), 10) })
	ctx := b.Context()
	b.SetParallelism(max(1, benchWorkers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	stats = commitStats{}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := txn(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), mode+"s/s")
	stats.report(b)
}

// BenchmarkSagaEndToEnd: two-branch sagas, submit and wait.
func BenchmarkSagaEndToEnd(b *testing.B) { benchmarkEndToEnd(b, ModeSaga) }

// BenchmarkTCCEndToEnd: two-branch TCC transactions, commit and wait.
func BenchmarkTCCEndToEnd(b *testing.B) { benchmarkEndToEnd(b, ModeTCC) }

// BenchmarkTwoPCEndToEnd: two-participant 2PC over HTTP, submit and wait.
func BenchmarkTwoPCEndToEnd(b *testing.B) { benchmarkEndToEnd(b, ModeTwoPC) }
