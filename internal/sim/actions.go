package sim

import (
	"fmt"
	"slices"

	p "github.com/concordtm/concord/internal/protocol"
)

// actKind is one kind of thing that can happen next.
type actKind uint8

const (
	aDeliver   actKind = iota // the oldest message of a channel arrives
	aReorder                  // a younger message overtakes (fault)
	aDrop                     // a message is lost (fault)
	aDup                      // a message arrives and stays to arrive again (fault)
	aCrash                    // a node crashes (fault)
	aRestart                  // a crashed node restarts
	aPartition                // the network splits (fault)
	aHeal                     // the partition ends
	aTimer                    // the earliest timer fires (a fault when messages are in flight: delay)
	aRetry                    // an operator retries a stuck transaction
	aSlow                     // the oldest message, a saga action, is delivered to a participant slower than the call timeout (fault)
	aLate                     // the oldest message, an action's retry, is refused while the slow first call runs (fault)
	aLand                     // a slow action call lands at its participant
)

// Action is one choice of the scheduler. It names messages by id and
// timers by owner, so that replaying the same actions from the same start
// gives the same run.
type Action struct {
	Kind actKind
	Msg  int    // message id
	Node int    // node (crash, restart, timer owner, landing)
	Call int    // timer: index of the coordinator's pending call, -1 for its tick
	Cut  uint32 // partition: the nodes cut off
}

// event is what a step did, for traces and diagrams.
type event struct {
	Kind     string // "msg", "lost", "note"
	From, To int
	Text     string
}

// timer is one armed timer.
type timer struct {
	At   int64
	Node int
	Call int
}

func (w *World) timers() []timer {
	var ts []timer
	if w.Coord.Up {
		if w.Coord.Tick > 0 {
			ts = append(ts, timer{At: w.Coord.Tick, Node: coord, Call: -1})
		}
		for i, pc := range w.Coord.Pending {
			ts = append(ts, timer{At: pc.Timeout, Node: coord, Call: i})
		}
	}
	for i := 1; i < len(w.Parts); i++ {
		if pn := &w.Parts[i]; pn.Up && pn.Timer > 0 {
			ts = append(ts, timer{At: pn.Timer, Node: i, Call: -1})
		}
	}
	return ts
}

// enabled lists what can happen next. Faults are offered only while the
// budget lasts.
func (w *World) enabled() []Action {
	if w.Violation != "" {
		return nil
	}
	cfg := w.cfg
	canFault := w.Faults < cfg.MaxFaults
	var as []Action
	// The network is one FIFO queue: only the oldest message is
	// delivered, lost or duplicated (losing a younger one now or when it
	// is the oldest is the same), and any other may overtake it as a
	// reorder fault. Keeping one order removes interleavings that differ
	// only in the order of independent deliveries.
	for k, m := range w.Net {
		if k == 0 {
			as = append(as, Action{Kind: aDeliver, Msg: m.ID})
			if canFault && cfg.Faults.Has(FaultLoss) {
				as = append(as, Action{Kind: aDrop, Msg: m.ID})
			}
			if canFault && cfg.Faults.Has(FaultDup) {
				as = append(as, Action{Kind: aDup, Msg: m.ID})
			}
		} else if canFault && cfg.Faults.Has(FaultReorder) {
			as = append(as, Action{Kind: aReorder, Msg: m.ID})
		}
	}
	as = w.slowActions(as, canFault)
	for i := 0; i <= cfg.Participants; i++ {
		up := w.Coord.Up
		if i > 0 {
			up = w.Parts[i].Up
		}
		switch {
		case !up:
			as = append(as, Action{Kind: aRestart, Node: i})
		case canFault && cfg.Faults.Has(FaultCrash) && cfg.crashable(i):
			as = append(as, Action{Kind: aCrash, Node: i})
		}
	}
	if w.Cut != 0 {
		as = append(as, Action{Kind: aHeal})
	} else if canFault && cfg.Faults.Has(FaultPartition) {
		for cut := uint32(1); cut < 1<<cfg.Participants; cut++ {
			as = append(as, Action{Kind: aPartition, Cut: cut << 1})
		}
	}
	if ts := w.timers(); len(ts) > 0 {
		first := slices.MinFunc(ts, func(a, b timer) int { return cmpInt(a.At, b.At) }).At
		delayed := len(w.Net) > 0
		if first <= cfg.horizon() && (!delayed || canFault && cfg.Faults.Has(FaultDelay)) {
			for _, t := range ts {
				if t.At == first {
					as = append(as, Action{Kind: aTimer, Node: t.Node, Call: t.Call})
				}
			}
		}
	}
	if w.Coord.Up && w.Coord.Mem.Status == p.StatusStuck && len(w.Net) == 0 {
		as = append(as, Action{Kind: aRetry})
	}
	return as
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// quiet reports whether nothing but restarts and heals can happen: the
// run has settled, or waits for a repair.
func (w *World) quiet(as []Action) bool {
	for _, a := range as {
		switch a.Kind {
		case aRestart, aHeal, aCrash, aPartition, aDrop, aDup, aReorder, aSlow, aLate:
		default:
			return false
		}
	}
	return true
}

// apply returns the world after a.
func (w *World) apply(a Action) *World {
	n := w.clone()
	n.events = nil
	n.stepErr = nil
	n.do(a)
	n.check()
	return n
}

func (w *World) take(id int) (msg, bool) {
	for k, m := range w.Net {
		if m.ID == id {
			w.Net = slices.Delete(w.Net, k, k+1)
			return m, true
		}
	}
	return msg{}, false
}

func (w *World) do(a Action) {
	switch a.Kind {
	case aDeliver, aReorder:
		m, _ := w.take(a.Msg)
		if a.Kind == aReorder {
			w.Faults++
		}
		w.deliver(m)
	case aDup:
		w.Faults++
		for _, m := range w.Net {
			if m.ID == a.Msg {
				w.note(m.To, "duplicate of "+m.String())
				w.deliver(m)
				break
			}
		}
	case aDrop:
		w.Faults++
		m, _ := w.take(a.Msg)
		w.events = append(w.events, event{Kind: "lost", From: m.From, To: m.To, Text: m.String() + " (lost)"})
	case aCrash:
		w.Faults++
		w.crash(a.Node)
	case aRestart:
		w.restart(a.Node)
	case aPartition:
		w.Faults++
		w.Cut = a.Cut
		w.note(-1, "partition: "+w.cutString()+" cut off")
	case aHeal:
		w.note(-1, "partition healed")
		w.Cut = 0
	case aTimer:
		if len(w.Net) > 0 {
			w.Faults++ // messages in flight are delayed past this timer
		}
		w.fire(a)
	case aRetry:
		w.note(coord, "operator retries")
		w.coordStep(p.Retry{Now: w.Now})
	case aSlow:
		w.Faults++
		m, _ := w.take(a.Msg)
		w.deliverSlowly(m)
	case aLate:
		w.Faults++
		m, _ := w.take(a.Msg)
		w.refuseLate(m)
	case aLand:
		w.land(a.Node)
	}
}

func (w *World) note(node int, text string) {
	w.events = append(w.events, event{Kind: "note", From: node, To: node, Text: text})
}

func (w *World) cutString() string {
	s := ""
	for i := 0; i <= w.cfg.Participants; i++ {
		if w.Cut&(1<<i) != 0 {
			if s != "" {
				s += ","
			}
			s += nodeName(i)
		}
	}
	return "{" + s + "}"
}

func (w *World) up(i int) bool {
	if i == coord {
		return w.Coord.Up
	}
	return w.Parts[i].Up
}

func (w *World) deliver(m msg) {
	cut := w.Cut != 0 && (w.Cut>>m.From)&1 != (w.Cut>>m.To)&1
	if !w.up(m.To) || cut {
		why := "down"
		if cut {
			why = "partition"
		}
		w.events = append(w.events, event{Kind: "lost", From: m.From, To: m.To, Text: m.String() + " (" + why + ")"})
		return
	}
	w.events = append(w.events, event{Kind: "msg", From: m.From, To: m.To, Text: m.String()})
	switch m.Kind {
	case mCall:
		w.replyAttempt = m.Attempt
		w.partStep(m.To, p.Message{Now: w.Now, Op: m.Op, Yes: w.cfg.votes()[m.To-1]})
	case mReply:
		b := nodeName(m.From)
		k := slices.IndexFunc(w.Coord.Pending, func(pc pending) bool {
			return pc.Branch == b && pc.Op == m.Op && pc.Attempt == m.Attempt
		})
		if k < 0 {
			return // the call timed out, or was lost in a restart
		}
		w.Coord.Pending = slices.Delete(w.Coord.Pending, k, k+1)
		w.coordStep(p.Result{Now: w.Now, Started: w.Now, Branch: b, Op: m.Op, Attempt: m.Attempt, Outcome: m.Outcome, Error: string(m.Outcome)})
	case mQuery:
		w.partStep(m.To, p.PeerQuery{Now: w.Now, From: nodeName(m.From)})
	case mAnswer:
		w.partStep(m.To, p.PeerAnswer{Now: w.Now, From: nodeName(m.From), State: m.State})
	case mInquiry:
		// The coordinator answers from what is on disk, as Concord's
		// GetDecision does.
		d := p.DecisionPending
		t := w.Coord.Disk
		switch {
		case t.Status == p.StatusCommitting || t.Status == p.StatusSucceeded || t.Status == p.StatusStuck && t.StuckPhase == p.StatusCommitting:
			d = p.DecisionCommit
		case t.Status == p.StatusAborted || t.Status == "":
			d = p.DecisionAbort
		}
		w.send(msg{From: coord, To: m.From, Kind: mDecision, Decision: d})
	case mDecision:
		w.partStep(m.To, p.DecisionAnswer{Now: w.Now, Decision: m.Decision})
	}
}

// crash stops node i: what it had not made durable is lost, and so are the
// messages it had not sent yet.
func (w *World) crash(i int) {
	w.note(i, "crash")
	w.Net = slices.DeleteFunc(w.Net, func(m msg) bool { return m.From == i })
	if i == coord {
		c := &w.Coord
		c.Up, c.Mem, c.Tick, c.Pending = false, c.Disk.Clone(), 0, nil
		return
	}
	pn := &w.Parts[i]
	pn.Up, pn.Timer, pn.Working = false, 0, 0
	pn.restoreDurable()
}

func (w *World) restart(i int) {
	w.note(i, "restart")
	if i == coord {
		w.Coord.Up = true
		if t := w.Coord.Mem; t.Status != p.StatusNew && !t.Status.Final() {
			w.coordStep(p.Recover{Now: w.Now})
		}
		return
	}
	w.Parts[i].Up = true
	w.partStep(i, p.Restart{Now: w.Now})
}

func (w *World) fire(a Action) {
	var at int64
	switch {
	case a.Node == coord && a.Call < 0:
		at = w.Coord.Tick
	case a.Node == coord:
		at = w.Coord.Pending[a.Call].Timeout
	default:
		at = w.Parts[a.Node].Timer
	}
	w.Now = max(w.Now, at)
	switch {
	case a.Node == coord && a.Call < 0:
		w.Coord.Tick = 0
		w.note(coord, "timer")
		w.coordStep(p.Tick{Now: w.Now})
	case a.Node == coord:
		pc := w.Coord.Pending[a.Call]
		w.Coord.Pending = slices.Delete(w.Coord.Pending, a.Call, a.Call+1)
		w.note(coord, fmt.Sprintf("no answer to %s %s", pc.Op, pc.Branch))
		w.coordStep(p.Result{Now: w.Now, Started: w.Now, Branch: pc.Branch, Op: pc.Op, Attempt: pc.Attempt, Outcome: p.OutcomeUnknown, Error: "timeout"})
	default:
		w.Parts[a.Node].Timer = 0
		before := w.pstate(a.Node)
		w.partStep(a.Node, p.Timeout{Now: w.Now})
		text := "timeout"
		if after := w.pstate(a.Node); after != before {
			text += " → " + string(after)
		}
		w.note(a.Node, text)
	}
}

// describe renders a for a step list.
func (w *World) describe(a Action) string {
	find := func(id int) string {
		for _, m := range w.Net {
			if m.ID == id {
				return fmt.Sprintf("%s → %s: %s", nodeName(m.From), nodeName(m.To), m)
			}
		}
		return "?"
	}
	switch a.Kind {
	case aDeliver:
		return "deliver " + find(a.Msg)
	case aReorder:
		return "deliver out of order " + find(a.Msg)
	case aDrop:
		return "lose " + find(a.Msg)
	case aDup:
		return "duplicate " + find(a.Msg)
	case aCrash:
		return "crash " + nodeName(a.Node)
	case aRestart:
		return "restart " + nodeName(a.Node)
	case aPartition:
		c := *w
		c.Cut = a.Cut
		return "partition " + c.cutString() + " from the rest"
	case aHeal:
		return "heal the partition"
	case aTimer:
		s := "timer of " + nodeName(a.Node)
		if a.Node == coord && a.Call >= 0 {
			pc := w.Coord.Pending[a.Call]
			s = fmt.Sprintf("call timeout of %s %s", pc.Op, pc.Branch)
		}
		if len(w.Net) > 0 {
			s += " (messages in flight are delayed)"
		}
		return s
	case aRetry:
		return "operator retry"
	case aSlow:
		return "deliver slowly " + find(a.Msg) + " (answer after the call timeout)"
	case aLate:
		return "refuse the retry " + find(a.Msg) + " (the first call still runs)"
	case aLand:
		return fmt.Sprintf("%s finishes the slow action (call %d)", nodeName(a.Node), w.Parts[a.Node].Working)
	}
	return "?"
}
