// Package bank is an end-to-end bank test: money moves between accounts
// held by two participant services, one on the real PostgreSQL and one on
// the real MariaDB, through sagas and TCC transactions submitted to the
// real `concord serve` binary, while the participants misbehave at random
// (a business refusal, a 500 before or after applying, a call that sleeps
// past the branch timeout and then applies, a call that hangs, a
// connection dropped before or after applying) and the coordinator is
// killed with SIGKILL every few seconds and restarted on the same data.
//
// It runs twice: on the embedded store with one coordinator, and with two
// coordinators sharing one PostgreSQL store, killed in turn. At the end,
// with the faults off and every transaction finished, it checks each
// participant's ledger against the coordinator's recorded decision for
// every gid: a succeeded transfer applied exactly once on both sides, an
// aborted one nets to zero on both sides, money is conserved across the
// two databases, and nothing is left unfinished.
//
// The participants live in the test process (participant.Handler and
// participant.Barrier over tables whose names are unique to one run). It
// needs the PostgreSQL and MariaDB of package testenv and skips without
// them unless CI=true.
//
//	go test -race -count=1 ./e2e/bank/
//	CONCORD_BANK_DURATION=5m go test -race -count=1 -run 'TestBank/embedded' -timeout 20m ./e2e/bank/
//
// CONCORD_BANK_DURATION sets how long each subtest keeps the load, the
// faults and the kills going (default 35s, 10s with -short). The seed
// printed at the start, passed back in CONCORD_BANK_SEED, replays the same
// transfers and kill schedule; the faults are drawn from the same sequence
// but in the order calls arrive, which, like the interleaving with the real
// processes and databases, varies from run to run. A failure prints, for
// each offending gid, the transaction as `concord tx show` prints it, the
// fault drawn for each participant call, and its ledger and barrier rows in
// both databases; the tables are kept for inspection.
package bank
