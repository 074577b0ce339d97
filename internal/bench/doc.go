// Package bench measures a Concord coordinator end to end: many workers
// run transactions through the public API over loopback, as an
// application would, against participants that do nothing, so that what
// is measured is the coordinator (API, protocol steps, group commit,
// branch calls) and the HTTP in between.
//
// Run starts the coordinator as a child process (`concord serve` on a
// fresh data directory) unless Config.Addr names one, serves the no-op
// participant endpoints itself, runs Config.Concurrency workers for a
// warm-up and then for Config.Duration, and returns a Result: throughput,
// latency percentiles, errors, and for a child coordinator its peak
// resident memory and CPU time per transaction.
//
//	res, err := bench.Run(ctx, bench.Config{Mode: bench.ModeSaga, Concurrency: 50, Duration: 10 * time.Second})
//
// `concord bench` is the command-line front end; docs/performance.md has
// the commands and the figures.
package bench
