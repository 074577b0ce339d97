package sim

import (
	"fmt"
	"slices"

	p "github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/saga"
)

// Slow saga participants: the slow and late faults, and the invariant
// that what a finished saga leaves at its participants is all or nothing.
//
// slow: a saga action call reaches its participant, which starts working
// on it (a local transaction) and is still working when the coordinator's
// call timeout fires: to the coordinator the outcome is unknown. The
// participant finishes later (aLand), whenever the coordinator no longer
// waits for that call, and its effect lands then, by the barrier's rules:
// it applies unless the action already did (a retry got there first) or a
// compensation came first (a null compensation, which makes it refuse).
// Its answer goes nowhere: the coordinator gave up on the call. A crash of
// the participant rolls the work back.
//
// late: while that first call still runs, the coordinator's retry of the
// action arrives and the participant refuses it, truthfully as far as it
// can tell (the first call holds what the action needs), where it would
// otherwise have applied it. The retry leaves no trace; the first call
// lands afterwards. Without the late fault a retry is applied at once, and
// the first call, landing, finds the action done.

// slowActions adds to as the saga faults and landings that can happen
// next.
func (w *World) slowActions(as []Action, canFault bool) []Action {
	if w.cfg.Protocol != p.ModeSaga {
		return as
	}
	if len(w.Net) > 0 && canFault {
		m := w.Net[0]
		if m.Kind == mCall && m.Op == p.OpAction && w.reachable(m) {
			pn := &w.Parts[m.To]
			if w.cfg.Faults.Has(FaultSlow) && pn.Working == 0 {
				as = append(as, Action{Kind: aSlow, Msg: m.ID})
			}
			// Refused where it would have applied.
			if w.cfg.Faults.Has(FaultLate) && pn.Working != 0 && !pn.Biz.Fwd && !pn.Biz.Refused && !pn.Biz.Bwd && w.cfg.votes()[m.To-1] {
				as = append(as, Action{Kind: aLate, Msg: m.ID})
			}
		}
	}
	for i := 1; i < len(w.Parts); i++ {
		if w.canLand(i) {
			as = append(as, Action{Kind: aLand, Node: i})
		}
	}
	return as
}

// reachable: m would be delivered now (its addressee is up, no partition
// between).
func (w *World) reachable(m msg) bool {
	cut := w.Cut != 0 && (w.Cut>>m.From)&1 != (w.Cut>>m.To)&1
	return w.up(m.To) && !cut
}

// canLand: participant i works on a slow call the coordinator has given up
// on (it timed out, or the coordinator lost it in a crash). Calls are told
// apart by attempt number, so a call with the same number made after a
// restart that lost the first (a deferred step) keeps the landing waiting
// until it is answered.
func (w *World) canLand(i int) bool {
	pn := &w.Parts[i]
	if !pn.Up || pn.Working == 0 {
		return false
	}
	b := branchID(i)
	return !slices.ContainsFunc(w.Coord.Pending, func(pc pending) bool {
		return pc.Branch == b && pc.Op == p.OpAction && pc.Attempt == pn.Working
	})
}

// deliverSlowly delivers m, an action call, to a participant that starts
// working on it and answers after the call timeout.
func (w *World) deliverSlowly(m msg) {
	w.events = append(w.events, event{Kind: "msg", From: m.From, To: m.To, Text: m.String() + " (slow)"})
	w.note(m.To, "still working when the call times out")
	w.Parts[m.To].Working = m.Attempt
}

// refuseLate answers m, a retry of the action, with a refusal while the
// first call still runs.
func (w *World) refuseLate(m msg) {
	w.events = append(w.events, event{Kind: "msg", From: m.From, To: m.To, Text: m.String()})
	w.note(m.To, "refuses the retry: the first call still runs")
	w.send(msg{From: m.To, To: coord, Kind: mReply, Op: m.Op, Outcome: p.OutcomeRejected, Attempt: m.Attempt})
}

// land finishes participant i's slow call: its effect takes place now,
// with the barrier's rules.
func (w *World) land(i int) {
	pn := &w.Parts[i]
	pn.Working = 0
	before := pn.Biz
	out := pn.Biz.act(w.cfg.votes()[i-1])
	pn.Durable = pn.machineValue()
	text := "the slow action lands: "
	switch {
	case pn.Biz.Net > before.Net:
		text += "applied"
	case out == p.OutcomeSuccess:
		text += "already applied, nothing changes"
	case before.Bwd || before.Refused && w.cfg.votes()[i-1]:
		text += "refused, the compensation came first"
	default:
		text += "refused"
	}
	w.note(i, text)
}

// sagaAtomicity is the saga's invariant, checked after every step once the
// saga has ended: aborted, no participant holds its branch's action
// applied; succeeded, every participant holds it applied exactly once.
// It reads the participants' effects (late landings included), not what
// the coordinator believes about its calls. Nothing may change them after
// the end: a late landing finds the action done or fenced.
func (w *World) sagaAtomicity() string {
	for i := 1; i < len(w.Parts); i++ {
		net := w.Parts[i].Biz.Net
		switch {
		case w.CoordDecided == p.StatusAborted && net != 0:
			return fmt.Sprintf("atomicity: the saga aborted but %s's action is still applied", nodeName(i))
		case w.CoordDecided == p.StatusCommitting && net != 1:
			return fmt.Sprintf("atomicity: the saga succeeded but %s's action is applied %d times", nodeName(i), net)
		}
	}
	return ""
}

// rules sets the saga rule the configuration asks for while one coordinator
// step runs, and returns what restores it. Only the unsafe SkipUnsure
// changes anything. The rule is the saga package's variable: runs with
// different settings must not run at the same time.
func (c *Config) rules() (restore func()) {
	if !c.SkipUnsure {
		return func() {}
	}
	old := saga.CompensateUnsure
	saga.CompensateUnsure = false
	return func() { saga.CompensateUnsure = old }
}
