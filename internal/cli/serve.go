package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/server"
)

// Serve runs `concord serve`.
func Serve(args []string, env Env) error {
	fs := newFlags("serve", env)
	cfg, err := config.Load(fs, args, env.Getenv)
	if err := parsed(fs, err); err != nil {
		return err
	}
	// The coordinator's live heap is small (about 7 MB under load) and
	// short-lived garbage dominates, so it collects less often than Go's
	// default. 400 once bought ~10% throughput; since the binary records
	// the collector costs about 1% of the CPU, and 200 runs as fast
	// (within 3%) with 15-18 MB less resident memory under saga load
	// (docs/performance.md). GOGC still overrides.
	if env.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// For profiling the coordinator under load (see docs/performance.md):
	// CONCORD_CPUPROFILE=file writes a CPU profile until the server stops.
	if path := env.Getenv("CONCORD_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	// The ready line on stdout lets scripts and tests that pass -addr
	// 127.0.0.1:0 learn the bound port.
	return server.Run(ctx, cfg, cfg.Logger(), func(addr string) {
		fmt.Fprintf(env.Stdout, "concord listening on %s://%s\n", scheme, addr)
	})
}
