package protocol

import (
	"errors"
	"fmt"
	"slices"
)

// Sentinel errors returned by Step. Callers test with errors.Is.
var (
	// ErrInvalidTransition: the event is not allowed in the current status
	// (for example a TCC commit after the transaction began cancelling).
	ErrInvalidTransition = errors.New("protocol: invalid transition")
	// ErrConflict: the event contradicts what the transaction already holds
	// (a different branch registered under a used id).
	ErrConflict = errors.New("protocol: conflict")
	// ErrInvalidEvent: the event is malformed (unknown branch, bad op).
	ErrInvalidEvent = errors.New("protocol: invalid event")
)

// Transition is one row of a mode's table: in any status of From, event On
// is handled by Do, which must leave the transaction in one of To.
type Transition struct {
	From []Status
	On   EventKind
	To   []Status
	Do   func(t *Txn, ev Event, fx *Effects) error
}

// Machine is a mode's transition table.
type Machine struct {
	Mode  Mode
	Table []Transition
}

// Effects collects what a step asks for. Do functions append calls, timers
// and reports; Step puts the Persist first.
type Effects struct {
	list         []Effect
	noWrite      bool
	deferred     bool
	callsCovered bool
}

// Call appends a Call effect.
func (fx *Effects) Call(c Call) { fx.list = append(fx.list, c) }

// Arm appends an Arm effect.
func (fx *Effects) Arm(at int64) { fx.list = append(fx.list, Arm{At: at}) }

// Report appends a Report effect.
func (fx *Effects) Report(s Status) { fx.list = append(fx.list, Report{Status: s}) }

// Alert appends an Alert effect.
func (fx *Effects) Alert(kind, msg string) {
	fx.list = append(fx.list, Alert{Kind: kind, Message: msg})
}

// Unchanged marks the step as having changed nothing that must be written
// (an idempotent repeat, a timer with nothing due).
func (fx *Effects) Unchanged() { fx.noWrite = true }

// Defer marks the step's change as not worth a write of its own (see
// Deferred): the next written state carries it.
func (fx *Effects) Defer() { fx.deferred = true }

// DeferCalls is Defer for a step that also calls: the machine promises that
// a restart from the last written state makes up for the calls (a saga's
// recovery compensates the branches it cannot prove idle: Txn.MaybeAhead).
func (fx *Effects) DeferCalls() { fx.deferred, fx.callsCovered = true, true }

// Find returns the transition for (status, kind), or nil.
func (m *Machine) Find(s Status, k EventKind) *Transition {
	for i := range m.Table {
		tr := &m.Table[i]
		if tr.On == k && slices.Contains(tr.From, s) {
			return tr
		}
	}
	return nil
}

// Step applies ev to t and returns the new state and the effects to run.
// t is not modified. On error the returned state is t and there are no
// effects.
func (m *Machine) Step(t Txn, ev Event) (Txn, []Effect, error) {
	tr := m.Find(t.Status, ev.Kind())
	if tr == nil {
		return t, nil, fmt.Errorf("%w: %s %s: %q in status %q", ErrInvalidTransition, m.Mode, t.GID, ev.Kind(), statusName(t.Status))
	}
	nt := t.Clone()
	var fx Effects
	if err := tr.Do(&nt, ev, &fx); err != nil {
		return t, nil, err
	}
	if !slices.Contains(tr.To, nt.Status) {
		// A bug in a Do function; surfaced loudly rather than persisted.
		return t, nil, fmt.Errorf("%w: %s: %q from %q led to %q, table allows %v", ErrInvalidTransition, m.Mode, ev.Kind(), t.Status, nt.Status, tr.To)
	}
	if fx.noWrite {
		return nt, fx.list, nil
	}
	nt.UpdatedAt = ev.At()
	if fx.deferred {
		for _, e := range fx.list {
			if _, ok := e.(Call); ok && fx.callsCovered {
				continue
			}
			switch e.(type) {
			case Call, Report, Alert:
				// A bug in a Do function: something that must follow a
				// durable write.
				return t, nil, fmt.Errorf("%w: %s: a deferred step emitted %T", ErrInvalidTransition, m.Mode, e)
			}
		}
		return nt, append([]Effect{Deferred{}}, fx.list...), nil
	}
	return nt, append([]Effect{Persist{}}, fx.list...), nil
}

func statusName(s Status) string {
	if s == StatusNew {
		return "new"
	}
	return string(s)
}
