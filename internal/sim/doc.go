// Package sim is a deterministic simulator and model checker for
// Concord's commit protocols. It runs the real coordinator machines
// (saga, tcc, twopc, threepc) and the pure participant machines
// (twopc.Participant, threepc.Participant; a simple applying participant
// for saga and TCC) on an in-memory network with virtual time.
//
// The scheduler chooses, at every step, one thing that can happen next:
// the oldest message of a channel arrives; the earliest timer fires; a
// crashed node restarts; a partition heals; an operator retries a stuck
// transaction; or, while the fault budget lasts, a fault: a node crashes
// (the coordinator keeps only what it Persisted, Deferred changes are
// lost; a participant keeps what its machine Persisted; messages a node
// had not sent yet die with it), the network splits, a message is lost,
// duplicated or overtaken, or a timer fires while messages are still in
// flight (delay); for sagas, a participant works on an action call past
// the call timeout and its effect lands later (slow), and refuses the
// retry while that first call still runs (late). Without the delay fault
// the network is synchronous: time moves only when no message is in
// flight.
//
// Invariants are checked after every step: agreement (no participant
// commits while another aborts, or while the coordinator decided abort),
// validity (a participant commits only if every one voted yes), durability
// (the coordinator never changes a decision, which it would after losing
// one in a crash); atomicity for sagas (once a saga has ended, aborted
// means no participant holds its action applied, late landings included,
// and succeeded means each holds it applied exactly once); TCC is checked
// when it settles (all applied or all undone). Config.SkipUnsure turns
// off a saga rule for one run, unsafely, to show what it prevents. Blocking is measured: a settled state in which a live
// participant holds locks undecided is blocked, and the longest time a
// participant held locks undecided is reported.
//
// Explore visits every state within a fault budget, breadth first with
// state hashing, and returns the shortest counterexample. RandomRuns does
// seeded random runs for larger systems; a failing run reports its seed,
// and RandomRun(cfg, seed) replays it.
package sim
