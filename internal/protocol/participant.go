package protocol

// This file is the vocabulary the participant machines of the commit
// protocols (twopc.Participant, threepc.Participant) share: their states,
// the events that drive them and the effects they ask for. Like the
// coordinator's machines they are pure: the runtime (the participant SDK,
// or the simulator) carries the effects out, in order, and a Persist must
// be durable before any effect after it (a reply above all).

// PState is a participant's place in a commit protocol.
type PState string

// Participant states.
const (
	PInit         PState = "init"         // nothing promised yet
	PVoted        PState = "voted"        // said yes; uncertain of the outcome
	PPreCommitted PState = "precommitted" // 3pc: did the work, logged undo/redo, acknowledged
	PCommitted    PState = "committed"
	PAborted      PState = "aborted"
)

// Decided reports whether the participant knows the outcome.
func (s PState) Decided() bool { return s == PCommitted || s == PAborted }

// PEvent is an input to a participant's Step.
type PEvent interface{ At() int64 }

// Message is a coordinator's request (prepare, commit, abort; can-commit,
// pre-commit, do-commit). For the vote (prepare, can-commit) Yes is the
// application's answer, asked by the runtime before stepping.
type Message struct {
	Now int64
	Op  Op
	Yes bool
}

// Timeout is the participant's timer firing (see Arm).
type Timeout struct{ Now int64 }

// PeerQuery is another participant asking for this one's state
// (termination protocols).
type PeerQuery struct {
	Now  int64
	From string
}

// PeerAnswer is another participant's answer to AskPeers.
type PeerAnswer struct {
	Now   int64
	From  string
	State PState
}

// PeerState is one peer's answer, as a participant keeps it.
type PeerState struct {
	ID    string
	State PState
}

// Decision is the outcome of a 2PC participant's question to the coordinator.
type Decision string

// Decisions a coordinator can give.
const (
	DecisionCommit  Decision = "commit"
	DecisionAbort   Decision = "abort"
	DecisionPending Decision = "pending"
)

// DecisionAnswer is the coordinator's answer to AskCoordinator.
type DecisionAnswer struct {
	Now      int64
	Decision Decision
}

// Restart is delivered once after the participant restarted from its
// durable state (the state as of its last Persist).
type Restart struct{ Now int64 }

func (e Message) At() int64        { return e.Now }
func (e Timeout) At() int64        { return e.Now }
func (e PeerQuery) At() int64      { return e.Now }
func (e PeerAnswer) At() int64     { return e.Now }
func (e DecisionAnswer) At() int64 { return e.Now }
func (e Restart) At() int64        { return e.Now }

// Reply: answer the coordinator's message Op with Outcome (success is a
// yes or an acknowledgement, rejected a no or a refusal).
type Reply struct {
	Op      Op
	Outcome Outcome
}

// Work: do the transaction's work without making it visible: take the
// locks, write the changes with undo and redo. (2PC at prepare, 3PC at
// pre-commit.) It goes into the same local write as the Persist after it.
type Work struct{}

// CommitLocal: make the work visible and release the locks.
type CommitLocal struct{}

// AbortLocal: undo the work (if any) and release the locks.
type AbortLocal struct{}

// AskPeers: ask every other participant for its state (PeerQuery); the
// answers come back as PeerAnswer events.
type AskPeers struct{}

// AnswerPeer: tell participant To this one's State.
type AnswerPeer struct {
	To    string
	State PState
}

// AskCoordinator: ask the coordinator for the decision (2PC); the answer
// comes back as a DecisionAnswer.
type AskCoordinator struct{}

func (Reply) effect()          {}
func (Work) effect()           {}
func (CommitLocal) effect()    {}
func (AbortLocal) effect()     {}
func (AskPeers) effect()       {}
func (AnswerPeer) effect()     {}
func (AskCoordinator) effect() {}
