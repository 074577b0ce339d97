// Package crash holds end-to-end crash-recovery tests: they run the real
// `concord serve` binary, kill it with SIGKILL (through a named failpoint or
// from outside, like kill -9), restart it on the same data directory, and
// check against real participant databases that nothing decided was lost
// and nothing undecided was applied.
//
// The participants are banks: in-test HTTP servers, each with its own
// SQLite database and a participant.Barrier, so that the repeated
// deliveries a crash causes are absorbed. Every applied operation leaves a
// row in a ledger table, which the tests read back to count how often an
// action, compensation, try, confirm or cancel really took effect.
//
// Run with the race detector, as CI does:
//
//	go test -race -count=1 ./e2e/crash/
//
// The random kill test prints its seed; CONCORD_CRASH_SEED=<seed> replays
// the same workload and kill schedule (the interleaving with the real
// process still varies from run to run).
package crash
