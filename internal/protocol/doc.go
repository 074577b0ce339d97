// Package protocol holds what every Concord transaction mode shares: the
// transaction state (Txn), the events that drive it, the effects a step
// asks the runtime to perform, and the table-driven Machine that applies
// one event to one state.
//
// Everything here is pure: no I/O, no wall clock, no randomness. Time comes
// in with each event (Now, unix nanoseconds); jitter is derived from the
// transaction's identity. The same code therefore runs in the coordinator,
// in unit tests and in the simulator, and a run can be replayed exactly.
//
// The runtime must honour one ordering rule: when a step's effects begin
// with Persist, the new state must be durable before any later effect of
// that step (a Call, a Report) is carried out. A decision is thus on disk
// before any participant hears of it.
package protocol
