package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/concordtm/concord/internal/bench"
)

// hiddenBenchFlags are left out of `concord bench -h`: they are for
// working on Concord, not for measuring it.
var hiddenBenchFlags = map[string]bool{"cpuprofile": true}

// Bench runs `concord bench`. It prints the report, then fails (exit 1) if
// any transaction failed or none succeeded, so scripts notice bad figures.
func Bench(args []string, env Env) error {
	fs := newFlags("bench", env)
	cfg := bench.Default()
	cfg.RegisterFlags(fs)
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (the load generator, not the coordinator) to this file")
	fs.Usage = func() { benchUsage(fs) }
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("bench: unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.Validate(); err != nil {
		return usageError("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	if !*asJSON {
		where := "a child coordinator"
		if cfg.Addr != "" {
			where = cfg.Addr
		}
		fmt.Fprintf(env.Stderr, "concord bench: %s against %s, %d workers, %v warm-up + %v...\n", cfg.Mode, where, cfg.Concurrency, cfg.Warmup, cfg.Duration)
	}
	if cfg.Warmup+cfg.Duration >= 15*time.Second {
		cfg.Progress = env.Stderr // a line every 5s on long runs
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return errors.New("interrupted")
		}
		return err
	}
	if *asJSON {
		err = bench.WriteJSON(env.Stdout, res)
	} else {
		err = bench.WriteText(env.Stdout, res)
	}
	switch {
	case err != nil:
		return err
	case res.Errors > 0:
		return fmt.Errorf("%d transactions failed; the first: %s", res.Errors, res.FirstError)
	case res.Count == 0:
		return errors.New("no transaction succeeded in the measured period")
	}
	return nil
}

func benchUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, `usage: concord bench [flags]

Runs transactions with no-op branches against a coordinator, as fast as
the workers go, and reports throughput, latency percentiles and errors;
for a coordinator it starts itself, also its peak memory and CPU time.

flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		if hiddenBenchFlags[f.Name] {
			return
		}
		kind, usage := flag.UnquoteUsage(f)
		if kind != "" {
			kind = " " + kind
		}
		fmt.Fprintf(w, "  -%s%s\n    \t%s", f.Name, kind, usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
