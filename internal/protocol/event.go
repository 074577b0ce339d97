package protocol

// EventKind names an event for the transition tables.
type EventKind string

// Event kinds.
const (
	EvSubmit   EventKind = "submit"   // a saga or 2pc arrives, or a TCC begins
	EvRegister EventKind = "register" // TCC: a branch is registered
	EvCommit   EventKind = "commit"   // TCC: the initiator says every try succeeded
	EvRollback EventKind = "rollback" // TCC: the initiator says a try failed
	EvResult   EventKind = "result"   // a branch call returned (or timed out)
	EvTick     EventKind = "tick"     // a timer fired
	EvRetry    EventKind = "retry"    // an operator asks to retry now
	EvAbort    EventKind = "abort"    // an operator asks to roll back
	EvRecover  EventKind = "recover"  // the coordinator restarted
)

// Event is an input to Step. Every event carries the time it happened.
type Event interface {
	Kind() EventKind
	At() int64
}

// Submit starts a transaction. Txn is the fully built initial state (gid,
// mode, branches, options, spec hash); the machine fills in statuses and
// times.
type Submit struct {
	Now int64
	Txn Txn
}

// Register adds a TCC branch. MaxBranches (> 0) bounds how many branches
// the transaction may hold.
type Register struct {
	Now         int64
	Branch      Branch
	MaxBranches int
}

// Commit is the TCC initiator's "all tries succeeded".
type Commit struct{ Now int64 }

// Rollback is the TCC initiator's "a try failed".
type Rollback struct {
	Now    int64
	Reason string
}

// Result is the outcome of one call.
type Result struct {
	Now     int64
	Branch  string
	Op      Op
	Attempt int // the attempt number carried by the Call effect
	Started int64
	Outcome Outcome
	Error   string
}

// Tick is a timer firing.
type Tick struct{ Now int64 }

// Retry is an operator's request to retry now with a fresh budget.
type Retry struct{ Now int64 }

// Abort is an operator's request to roll back an undecided transaction.
type Abort struct {
	Now    int64
	Reason string
}

// Recover is delivered once per unfinished transaction after a restart.
// Calls that were in flight at the crash are lost; their outcome is unknown.
type Recover struct{ Now int64 }

func (Submit) Kind() EventKind   { return EvSubmit }
func (Register) Kind() EventKind { return EvRegister }
func (Commit) Kind() EventKind   { return EvCommit }
func (Rollback) Kind() EventKind { return EvRollback }
func (Result) Kind() EventKind   { return EvResult }
func (Tick) Kind() EventKind     { return EvTick }
func (Retry) Kind() EventKind    { return EvRetry }
func (Abort) Kind() EventKind    { return EvAbort }
func (Recover) Kind() EventKind  { return EvRecover }

func (e Submit) At() int64   { return e.Now }
func (e Register) At() int64 { return e.Now }
func (e Commit) At() int64   { return e.Now }
func (e Rollback) At() int64 { return e.Now }
func (e Result) At() int64   { return e.Now }
func (e Tick) At() int64     { return e.Now }
func (e Retry) At() int64    { return e.Now }
func (e Abort) At() int64    { return e.Now }
func (e Recover) At() int64  { return e.Now }
