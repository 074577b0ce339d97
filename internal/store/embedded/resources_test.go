//go:build unix

package embedded

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/store/storetest"
)

// BenchmarkWorkloadResources runs storetest.BenchWorkload and also reports
// the process CPU time per record, the peak RSS of the process and the
// bytes on disk afterwards. Run one engine per process so the RSS is that
// engine's:
//
//	go test -run '^$' -bench 'WorkloadResources/bbolt' -benchtime 4000x ./internal/store/embedded
func BenchmarkWorkloadResources(b *testing.B) {
	for _, engine := range engines {
		b.Run(engine, func(b *testing.B) {
			dir := b.TempDir()
			s := openTest(b, dir, engine)
			defer s.Close()
			before := cpuTime(b)
			storetest.BenchWorkload(b, s)
			cpu := cpuTime(b) - before
			records := float64(b.N) * 50
			b.ReportMetric(float64(cpu.Microseconds())/records, "cpu-µs/rec")
			var ru syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MiB")
			b.ReportMetric(float64(diskUsage(b, dir))/(1<<20), "disk-MiB")
		})
	}
}

// cpuTime returns the user plus system CPU time of the process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// diskUsage returns the apparent size of the files under dir.
func diskUsage(b *testing.B, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}
