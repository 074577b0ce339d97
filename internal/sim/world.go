package sim

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	p "github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/saga"
	"github.com/concordtm/concord/internal/protocol/tcc"
	"github.com/concordtm/concord/internal/protocol/threepc"
	"github.com/concordtm/concord/internal/protocol/twopc"
)

// Virtual time is in nanoseconds, like the machines'; ms is one
// millisecond of it.
const ms = int64(1_000_000)

// Timing of the simulated system. Messages take no time; time moves only
// when a timer fires. Participants wait longer than the coordinator's
// deadline plus a call timeout, as a deployment should configure them.
const (
	deadline        = 100 * ms // coordinator: each undecided phase
	callTimeout     = 40 * ms  // coordinator: a call without an answer is unknown
	retryInitial    = 50 * ms
	retryMax        = 200 * ms
	voteTimeout     = 300 * ms // 3pc participant: voted, waiting for pre-commit
	decisionTimeout = 300 * ms // participant: waiting for the decision
	askTimeout      = 50 * ms  // 3pc participant: collecting peers' answers
	defaultHorizon  = 1000 * ms
)

// coord is node 0.
const coord = 0

// msgKind tells apart what travels between nodes.
type msgKind uint8

const (
	mCall     msgKind = iota // coordinator → participant: Op, Attempt
	mReply                   // participant → coordinator: Op, Attempt, Outcome
	mQuery                   // participant → peer
	mAnswer                  // peer → participant: State
	mInquiry                 // 2pc participant → coordinator
	mDecision                // coordinator → participant: Decision
)

// msg is one message on the network.
type msg struct {
	ID       int
	From, To int
	Kind     msgKind
	Op       p.Op
	Attempt  int
	Outcome  p.Outcome
	State    p.PState
	Decision p.Decision
}

func (m msg) String() string {
	switch m.Kind {
	case mCall:
		return string(m.Op)
	case mReply:
		return fmt.Sprintf("%s %s", m.Op, m.Outcome)
	case mQuery:
		return "state?"
	case mAnswer:
		return string(m.State)
	case mInquiry:
		return "decision?"
	}
	return string(m.Decision)
}

// pending is a coordinator call awaiting its answer.
type pending struct {
	Branch  string
	Op      p.Op
	Attempt int
	Timeout int64
}

// coordNode is the coordinator: its machine's state in memory and on disk.
type coordNode struct {
	Up      bool
	Mem     p.Txn
	Disk    p.Txn // the last Persisted state; Status "" if none
	Tick    int64 // armed timer, 0 if none
	Pending []pending
}

// partNode is one participant.
type partNode struct {
	Up      bool
	Two     twopc.Participant
	Three   threepc.Participant
	Biz     biz // saga and tcc
	Durable any // the machine value as of its last Persist
	Timer   int64
	// Said yes (sticky), and since when it holds locks undecided (0: not).
	SaidYes     bool
	LockedSince int64
	Locked      bool
	// Working is the attempt of a saga action call the participant is
	// still working on after the coordinator's call timed out (the slow
	// fault), 0 if none. It is a local transaction not yet committed: a
	// crash rolls it back.
	Working int
}

// biz is a saga or TCC participant: it applies operations at once, with a
// barrier (a compensation or cancel before the forward op makes the
// forward op refused).
type biz struct {
	// The barrier's rows: the forward operation took effect, the
	// backward one undid it; Refused: the forward operation is refused
	// from now on (the participant said no, or a null compensation or
	// cancel came first).
	Fwd, Bwd, Refused bool
	// Net is what users see: +1 each time the forward operation's effect
	// takes place, -1 each time the backward one undoes it. The
	// invariants read it, not the barrier's rows.
	Net int8
}

// act is the forward operation with the barrier's rules: it takes effect
// at most once, and never after a compensation or cancel. A participant
// that says no refuses it, and every later call too.
func (b *biz) act(yes bool) p.Outcome {
	switch {
	case b.Refused || b.Bwd || !yes:
		b.Refused = true
		return p.OutcomeRejected
	case !b.Fwd:
		b.Fwd = true
		b.Net++
	}
	return p.OutcomeSuccess
}

// undo is the backward operation: it undoes the forward one once, or,
// finding none, records a null compensation that bars it.
func (b *biz) undo() {
	switch {
	case b.Bwd:
	case b.Fwd:
		b.Bwd = true
		b.Net--
	default:
		b.Refused = true
	}
}

// World is the whole simulated system. Step-by-step it is changed only by
// apply; clone copies it deeply.
type World struct {
	cfg    *Config
	Now    int64
	Coord  coordNode
	Parts  []partNode
	Net    []msg
	NextID int
	// Cut, when not zero, is the set of nodes (bit i = node i) cut off
	// from the others.
	Cut    uint32
	Faults int
	// Sticky facts for the invariants.
	CoordDecided p.Status // StatusCommitting or StatusAborted once decided
	AnyCommit    bool
	AnyAbort     bool
	MaxLocked    int64 // longest a participant held locks undecided
	Violation    string

	// Transient, not part of the state: errors from a machine, the
	// attempt a participant is answering, what the step did (for traces).
	stepErr      error
	replyAttempt int
	events       []event
}

func (w *World) clone() *World {
	c := *w
	c.Coord.Mem = w.Coord.Mem.Clone()
	c.Coord.Disk = w.Coord.Disk.Clone()
	c.Coord.Pending = slices.Clone(w.Coord.Pending)
	c.Parts = slices.Clone(w.Parts)
	c.Net = slices.Clone(w.Net)
	return &c
}

func (w *World) machine() *p.Machine {
	switch w.cfg.Protocol {
	case p.ModeSaga:
		return saga.Machine
	case p.ModeTCC:
		return tcc.Machine
	case p.ModeTwoPC:
		return twopc.Machine
	}
	return threepc.Machine
}

// Participants are named B, C, D, … as in the seeds' stories (where A is
// the coordinator, here TM).
func branchID(i int) string { return string(rune('A' + i)) }

func nodeName(i int) string {
	if i == coord {
		return "TM"
	}
	return branchID(i)
}

func nodeOf(branch string) int { return int(branch[0] - 'A') }

// newWorld builds the system and submits the transaction at time 0.
func newWorld(cfg *Config) *World {
	w := &World{cfg: cfg}
	w.Coord.Up = true
	n := cfg.Participants
	w.Parts = make([]partNode, n+1) // index 0 unused
	for i := 1; i <= n; i++ {
		var peers []string
		for j := 1; j <= n; j++ {
			if j != i {
				peers = append(peers, branchID(j))
			}
		}
		pn := &w.Parts[i]
		pn.Up = true
		pn.Two = twopc.Participant{ID: branchID(i), Peers: peers, Termination: cfg.Termination, DecisionTimeout: decisionTimeout}
		pn.Three = threepc.Participant{ID: branchID(i), Peers: peers, Termination: cfg.Termination,
			VoteTimeout: voteTimeout, DecisionTimeout: decisionTimeout, AskTimeout: askTimeout}
		pn.Durable = pn.machineValue()
	}
	w.Parts[0].Up = false
	opts := p.Options{Timeout: deadline, BranchTimeout: callTimeout, MaxAttempts: 6, MaxTotalAttempts: 200,
		RetryInitial: retryInitial, RetryMax: retryMax}
	txn := p.Txn{GID: "g", Mode: cfg.Protocol, Options: opts}
	for i := 1; i <= n; i++ {
		b := p.Branch{ID: branchID(i), ForwardURL: "u/" + branchID(i)}
		if cfg.Protocol == p.ModeSaga || cfg.Protocol == p.ModeTCC {
			b.BackwardURL = "u/" + branchID(i) + "/undo"
		}
		txn.Branches = append(txn.Branches, b)
	}
	if cfg.Protocol == p.ModeTCC {
		// The initiator: begin, register every branch (each Try is done
		// directly with the participant), then commit if every Try
		// succeeded.
		w.coordStep(p.Submit{Now: 0, Txn: p.Txn{GID: "g", Mode: p.ModeTCC, Options: opts}})
		for _, b := range txn.Branches {
			w.coordStep(p.Register{Now: 0, Branch: b})
		}
		if slices.Contains(cfg.votes(), false) {
			w.coordStep(p.Rollback{Now: 0, Reason: "a try failed"})
		} else {
			w.coordStep(p.Commit{Now: 0})
		}
	} else {
		w.coordStep(p.Submit{Now: 0, Txn: txn})
	}
	w.check()
	return w
}

func (pn *partNode) machineValue() any {
	return [3]any{pn.Two, pn.Three, pn.Biz}
}

func (pn *partNode) restoreDurable() {
	v := pn.Durable.([3]any)
	pn.Two, pn.Three, pn.Biz = v[0].(twopc.Participant), v[1].(threepc.Participant), v[2].(biz)
}

// pstate is participant i's protocol state.
func (w *World) pstate(i int) p.PState {
	pn := &w.Parts[i]
	var s p.PState
	switch w.cfg.Protocol {
	case p.ModeTwoPC:
		s = pn.Two.State
	case p.ModeThreePC:
		s = pn.Three.State
	default:
		switch {
		case pn.Biz.Bwd || pn.Biz.Refused:
			return p.PAborted
		case pn.Biz.Fwd:
			return p.PCommitted
		}
	}
	if s == "" {
		return p.PInit
	}
	return s
}

// holdsLocks: undecided with work done that others cannot see or touch.
func (w *World) holdsLocks(i int) bool {
	s := w.pstate(i)
	switch w.cfg.Protocol {
	case p.ModeTwoPC:
		return s == p.PVoted
	case p.ModeThreePC:
		return s == p.PPreCommitted
	}
	return false
}

// coordStep steps the coordinator's machine and carries out the effects.
func (w *World) coordStep(ev p.Event) {
	c := &w.Coord
	before := c.Mem.Status
	restore := w.cfg.rules()
	nt, fx, err := w.machine().Step(c.Mem, ev)
	restore()
	if err != nil {
		if errors.Is(err, p.ErrInvalidTransition) && (c.Mem.Status.Final() || ev.Kind() == p.EvRegister) {
			return // a late answer after the end
		}
		if errors.Is(err, p.ErrInvalidTransition) && ev.Kind() == p.EvResult {
			return
		}
		w.stepErr = err
		return
	}
	// The attempt history is for people; the machines never read it.
	// Dropped here, it neither grows the states nor splits equal ones.
	for i := range nt.Branches {
		nt.Branches[i].History = nil
	}
	c.Mem = nt
	decidedCommit := before != p.StatusCommitting && (nt.Status == p.StatusCommitting || nt.Status == p.StatusSucceeded) &&
		(w.cfg.Protocol == p.ModeTwoPC || w.cfg.Protocol == p.ModeThreePC)
	for _, e := range fx {
		switch e := e.(type) {
		case p.Persist:
			if decidedCommit && w.cfg.NoDurableDecision && nt.Status == p.StatusCommitting {
				continue // the variant that keeps its decision in memory only
			}
			c.Disk = nt.Clone()
		case p.Call:
			w.send(msg{From: coord, To: nodeOf(e.Branch), Kind: mCall, Op: e.Op, Attempt: e.Attempt})
			c.Pending = append(c.Pending, pending{Branch: e.Branch, Op: e.Op, Attempt: e.Attempt, Timeout: w.Now + callTimeout})
		case p.Arm:
			c.Tick = max(e.At, w.Now)
		}
	}
	switch {
	case nt.Status == p.StatusCommitting || nt.Status == p.StatusSucceeded || nt.Status == p.StatusStuck && nt.StuckPhase == p.StatusCommitting:
		if w.cfg.Protocol == p.ModeTwoPC || w.cfg.Protocol == p.ModeThreePC || nt.Status == p.StatusSucceeded {
			w.decided(p.StatusCommitting)
		}
	case nt.Status == p.StatusAborted:
		w.decided(p.StatusAborted)
	}
}

func (w *World) decided(s p.Status) {
	if w.CoordDecided == "" {
		w.CoordDecided = s
	} else if w.CoordDecided != s && w.Violation == "" {
		w.Violation = fmt.Sprintf("durability: the coordinator decided %s, then %s (a decision was forgotten)", w.CoordDecided, s)
	}
}

func (w *World) send(m msg) {
	w.NextID++
	m.ID = w.NextID
	w.Net = append(w.Net, m)
}

// partStep steps participant i's machine and carries out the effects.
func (w *World) partStep(i int, ev p.PEvent) {
	pn := &w.Parts[i]
	var fx []p.Effect
	var err error
	switch w.cfg.Protocol {
	case p.ModeTwoPC:
		pn.Two, fx, err = pn.Two.Step(ev)
	case p.ModeThreePC:
		pn.Three, fx, err = pn.Three.Step(ev)
	default:
		fx = pn.bizStep(ev, w.cfg.votes()[i-1])
	}
	if err != nil {
		w.stepErr = err
		return
	}
	for _, e := range fx {
		switch e := e.(type) {
		case p.Persist:
			pn.Durable = pn.machineValue()
		case p.Reply:
			w.send(msg{From: i, To: coord, Kind: mReply, Op: e.Op, Outcome: e.Outcome, Attempt: w.replyAttempt})
		case p.Arm:
			pn.Timer = e.At
		case p.AskPeers:
			for j := 1; j < len(w.Parts); j++ {
				if j != i {
					w.send(msg{From: i, To: j, Kind: mQuery})
				}
			}
		case p.AnswerPeer:
			w.send(msg{From: i, To: nodeOf(e.To), Kind: mAnswer, State: e.State})
		case p.AskCoordinator:
			w.send(msg{From: i, To: coord, Kind: mInquiry})
		}
	}
	if m, ok := ev.(p.Message); ok && m.Yes && w.pstate(i) != p.PAborted && (m.Op == p.OpPrepare || m.Op == p.OpCanCommit) {
		pn.SaidYes = true
	}
	switch s := w.pstate(i); {
	case s == p.PCommitted:
		w.AnyCommit = true
	case s == p.PAborted && w.cfg.Protocol != p.ModeSaga && w.cfg.Protocol != p.ModeTCC:
		w.AnyAbort = true
	}
}

// bizStep is a saga or TCC participant: it applies what it is asked at
// once, durably (a local transaction), and answers.
func (pn *partNode) bizStep(ev p.PEvent, yes bool) []p.Effect {
	m, ok := ev.(p.Message)
	if !ok {
		return nil
	}
	out := p.OutcomeSuccess
	switch m.Op {
	case p.OpAction, p.OpConfirm:
		out = pn.Biz.act(yes || m.Op == p.OpConfirm)
	case p.OpCompensate, p.OpCancel:
		pn.Biz.undo()
	}
	return []p.Effect{p.Persist{}, p.Reply{Op: m.Op, Outcome: out}}
}

// check updates the lock bookkeeping and tests the invariants that must
// hold in every state.
func (w *World) check() {
	if w.stepErr != nil && w.Violation == "" {
		w.Violation = "machine error: " + w.stepErr.Error()
	}
	for i := 1; i < len(w.Parts); i++ {
		pn := &w.Parts[i]
		if pn.Up && w.holdsLocks(i) {
			if !pn.Locked {
				pn.Locked, pn.LockedSince = true, w.Now
			}
			w.MaxLocked = max(w.MaxLocked, w.Now-pn.LockedSince)
		} else {
			pn.Locked = false
		}
	}
	if w.Violation != "" {
		return
	}
	if w.cfg.Protocol == p.ModeSaga {
		w.Violation = w.sagaAtomicity()
		return
	}
	if w.cfg.Protocol != p.ModeTwoPC && w.cfg.Protocol != p.ModeThreePC {
		return // TCC is checked when it settles
	}
	coordAbort := w.CoordDecided == p.StatusAborted
	coordCommit := w.CoordDecided == p.StatusCommitting
	if w.AnyCommit && (w.AnyAbort || coordAbort) || coordCommit && w.AnyAbort {
		var parts []string
		for i := 1; i < len(w.Parts); i++ {
			parts = append(parts, nodeName(i)+"="+string(w.pstate(i)))
		}
		dec := "nothing"
		if w.CoordDecided != "" {
			dec = string(w.CoordDecided)
		}
		w.Violation = fmt.Sprintf("agreement: participants %s, coordinator decided %s", strings.Join(parts, " "), dec)
		return
	}
	if w.AnyCommit {
		for i := 1; i < len(w.Parts); i++ {
			if !w.Parts[i].SaidYes {
				w.Violation = fmt.Sprintf("validity: a participant committed but %s never voted yes", nodeName(i))
				return
			}
		}
	}
}

// settledCheck tests what must hold once nothing more happens and every
// node is up: each protocol's end state. (Sagas are checked after every
// step, by sagaAtomicity.)
func (w *World) settledCheck() string {
	t := w.Coord.Mem
	switch w.cfg.Protocol {
	case p.ModeTCC:
		if !t.Status.Final() {
			return ""
		}
		for i := 1; i < len(w.Parts); i++ {
			applied := w.Parts[i].Biz.Net > 0
			if t.Status == p.StatusSucceeded && !applied {
				return fmt.Sprintf("agreement: %s succeeded but %s is not applied", t.Mode, nodeName(i))
			}
			if t.Status == p.StatusAborted && applied {
				return fmt.Sprintf("agreement: %s aborted but %s is still applied", t.Mode, nodeName(i))
			}
		}
	}
	return ""
}

// key identifies the state for deduplication: everything that can change
// what happens next (message ids and statistics are left out).
func (w *World) key() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d|%d|%d|%s|%v%v|%s|", w.Now, w.Cut, w.Faults, w.CoordDecided, w.AnyCommit, w.AnyAbort, w.Violation)
	c := &w.Coord
	fmt.Fprintf(&sb, "C%v,%d,", c.Up, c.Tick)
	txnKey(&sb, c.Mem)
	txnKey(&sb, c.Disk)
	for _, pc := range c.Pending {
		fmt.Fprintf(&sb, "%s%s%d@%d,", pc.Branch, pc.Op, pc.Attempt, pc.Timeout)
	}
	for i := 1; i < len(w.Parts); i++ {
		pn := &w.Parts[i]
		fmt.Fprintf(&sb, "|P%v,%d,%v,%v,%d,%d,", pn.Up, pn.Timer, pn.SaidYes, pn.Locked, pn.LockedSince, pn.Working)
		partKey(&sb, pn.Two, pn.Three, pn.Biz)
		d := pn.Durable.([3]any)
		partKey(&sb, d[0].(twopc.Participant), d[1].(threepc.Participant), d[2].(biz))
	}
	sb.WriteString("|N")
	for _, m := range w.Net {
		// The id only names the message; equal messages are equal.
		fmt.Fprintf(&sb, "%d>%d:%d%s%d%s%s%s,", m.From, m.To, m.Kind, m.Op, m.Attempt, m.Outcome, m.State, m.Decision)
	}
	return sb.String()
}

func txnKey(sb *strings.Builder, t p.Txn) {
	// MaybeAhead and Unsure decide what a saga compensates.
	fmt.Fprintf(sb, "%s/%s/%d/%v:", t.Status, t.StuckPhase, t.Deadline, t.MaybeAhead)
	for _, b := range t.Branches {
		for _, o := range []p.OpState{b.Fwd, b.Mid, b.Bwd} {
			sb.WriteString(string(o.Status) + strconv.Itoa(o.Attempts) + "." + strconv.Itoa(o.Tries) + "@" + strconv.FormatInt(o.NextAt, 10))
			if o.Unsure {
				sb.WriteString("?")
			}
			sb.WriteString(",")
		}
		sb.WriteString(string(b.BackwardOp) + ";")
	}
}

func partKey(sb *strings.Builder, two twopc.Participant, three threepc.Participant, b biz) {
	sb.WriteString(string(two.State) + "/" + string(three.State))
	if three.Asking {
		sb.WriteString("?")
		for _, a := range three.Answers {
			sb.WriteString(a.ID + "=" + string(a.State) + ",")
		}
	}
	if b.Fwd {
		sb.WriteString("f")
	}
	if b.Bwd {
		sb.WriteString("b")
	}
	if b.Refused {
		sb.WriteString("r")
	}
	sb.WriteString(strconv.Itoa(int(b.Net)) + ";")
}
