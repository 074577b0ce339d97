package protocol

// Effect is something a step asks the runtime to do. Effects are data; the
// runtime executes them in order, and a Persist must be durable before any
// effect after it runs.
type Effect interface{ effect() }

// Persist: write the step's resulting state durably.
type Persist struct{}

// Deferred: the state changed, but nothing depends on the change being
// durable: a crash that loses it is harmless by the protocol's design (a
// 2PC vote before the decision: a restart aborts anyway; a commit
// acknowledgement before the last: a restart resends the commit). The
// runtime keeps the new state in memory and the next written state carries
// it. A step that defers emits no Report or Alert, and a Call only where a
// restart from the last written state makes up for the lost step (a saga's
// next action: see package saga).
type Deferred struct{}

// Call: invoke one branch operation. The runtime reports the outcome back
// as a Result event carrying the same Branch, Op and Attempt.
type Call struct {
	Branch  string
	Op      Op
	URL     string
	Payload []byte
	Attempt int
	Timeout int64 // nanoseconds
	// Peers are the transaction's other voting branches, for a
	// participant's termination protocol. The machines leave it empty;
	// the coordinator's runtime fills it for a 2PC prepare and a 3PC
	// can-commit or pre-commit, and the caller sends it (Concord-Peers).
	Peers []Peer
}

// Peer is a branch as another participant reaches it: its id and URL.
type Peer struct {
	Branch string
	URL    string
}

// Arm: deliver a Tick at or after At (unix ns). Arming again replaces the
// earlier timer of the same transaction.
type Arm struct{ At int64 }

// Report: the transaction reached a state its waiters care about (accepted,
// final, or stuck).
type Report struct{ Status Status }

// Alert: something needs an operator (a stuck transaction).
type Alert struct {
	Kind    string
	Message string
}

func (Persist) effect()  {}
func (Deferred) effect() {}
func (Call) effect()     {}
func (Arm) effect()      {}
func (Report) effect()   {}
func (Alert) effect()    {}
