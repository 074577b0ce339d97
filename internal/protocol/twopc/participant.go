package twopc

import (
	"fmt"
	"slices"

	p "github.com/concordtm/concord/internal/protocol"
)

// Participant is one 2PC participant as a pure state machine. Its zero
// value with ID, Peers and the timeouts set is a participant that has
// heard nothing. Step never modifies its receiver; it returns the next
// value and the effects to carry out, in order (a Persist must be durable
// before the effects after it run: the yes vote above all).
//
// States: init → voted (did the work, wrote it durably with its locks
// held, voted yes; uncertain) → committed or aborted. A no vote, or an
// abort heard before the prepare, is aborted at once (and refuses a later
// prepare).
//
// A voted participant never decides alone. When no decision has come
// within DecisionTimeout it asks the coordinator (AskCoordinator; the
// answer is a DecisionAnswer, "pending" while the coordinator has not
// decided) and asks again every DecisionTimeout: it is blocked, holding
// its locks, until the coordinator answers.
//
// With Termination set it also asks its peers (the cooperative termination
// protocol): a peer that knows the outcome tells it; a peer that has not
// voted aborts on being asked (it still may) and says so. Either settles
// the outcome. If every peer is voted (uncertain) too, nothing is learnt:
// it stays blocked and asks again later.
type Participant struct {
	ID              string
	Peers           []string
	Termination     bool
	DecisionTimeout int64 // ns: voted, waiting for the decision

	State p.PState
	// DecidedBy says how the outcome was reached: "coordinator" (its
	// message or its answer) or "peers".
	DecidedBy string
}

// Step applies ev and returns the new participant and the effects.
func (pt Participant) Step(ev p.PEvent) (Participant, []p.Effect, error) {
	n := pt
	if n.State == "" {
		n.State = p.PInit
	}
	n.Peers = slices.Clone(pt.Peers)
	var fx []p.Effect
	var err error
	switch e := ev.(type) {
	case p.Message:
		fx, err = n.message(e)
	case p.Timeout:
		if n.State == p.PVoted {
			fx = []p.Effect{p.AskCoordinator{}}
			if n.Termination && len(n.Peers) > 0 {
				fx = append(fx, p.AskPeers{})
			}
			fx = append(fx, p.Arm{At: e.Now + n.DecisionTimeout})
		}
	case p.PeerQuery:
		if n.State == p.PInit {
			// Not voted: free to abort, and the asker may then abort too.
			n.decide(p.PAborted, "peers")
			fx = []p.Effect{p.Persist{}}
		}
		fx = append(fx, p.AnswerPeer{To: e.From, State: n.State})
	case p.PeerAnswer:
		if n.State == p.PVoted && slices.Contains(n.Peers, e.From) {
			switch e.State {
			case p.PCommitted:
				n.decide(p.PCommitted, "peers")
				fx = []p.Effect{p.CommitLocal{}, p.Persist{}}
			case p.PAborted, p.PInit:
				n.decide(p.PAborted, "peers")
				fx = []p.Effect{p.AbortLocal{}, p.Persist{}}
			}
		}
	case p.DecisionAnswer:
		if n.State == p.PVoted {
			switch e.Decision {
			case p.DecisionCommit:
				n.decide(p.PCommitted, "coordinator")
				fx = []p.Effect{p.CommitLocal{}, p.Persist{}}
			case p.DecisionAbort:
				n.decide(p.PAborted, "coordinator")
				fx = []p.Effect{p.AbortLocal{}, p.Persist{}}
			}
		}
	case p.Restart:
		if n.State == p.PVoted {
			// Still prepared, still uncertain: ask at once.
			fx = []p.Effect{p.Arm{At: e.Now}}
		}
	default:
		err = fmt.Errorf("%w: 2pc participant: event %T", p.ErrInvalidEvent, ev)
	}
	if err != nil {
		return pt, nil, err
	}
	return n, fx, nil
}

func (n *Participant) message(m p.Message) ([]p.Effect, error) {
	reply := func(o p.Outcome) p.Effect { return p.Reply{Op: m.Op, Outcome: o} }
	switch m.Op {
	case p.OpPrepare:
		switch n.State {
		case p.PInit:
			if !m.Yes {
				n.decide(p.PAborted, "coordinator")
				return []p.Effect{p.Persist{}, reply(p.OutcomeRejected)}, nil
			}
			n.State = p.PVoted
			return []p.Effect{p.Work{}, p.Persist{}, reply(p.OutcomeSuccess), p.Arm{At: m.Now + n.DecisionTimeout}}, nil
		case p.PVoted, p.PCommitted:
			return []p.Effect{reply(p.OutcomeSuccess)}, nil // a repeat
		}
		return []p.Effect{reply(p.OutcomeRejected)}, nil
	case p.OpCommit:
		switch n.State {
		case p.PVoted:
			n.decide(p.PCommitted, "coordinator")
			return []p.Effect{p.CommitLocal{}, p.Persist{}, reply(p.OutcomeSuccess)}, nil
		case p.PCommitted:
			return []p.Effect{reply(p.OutcomeSuccess)}, nil
		}
		return []p.Effect{reply(p.OutcomeRejected)}, nil
	case p.OpAbort:
		switch n.State {
		case p.PCommitted:
			return []p.Effect{reply(p.OutcomeRejected)}, nil
		case p.PAborted:
			return []p.Effect{reply(p.OutcomeSuccess)}, nil
		}
		var fx []p.Effect
		if n.State == p.PVoted {
			fx = append(fx, p.AbortLocal{})
		}
		n.decide(p.PAborted, "coordinator")
		return append(fx, p.Persist{}, reply(p.OutcomeSuccess)), nil
	}
	return nil, fmt.Errorf("%w: 2pc participant: operation %q", p.ErrInvalidEvent, m.Op)
}

func (n *Participant) decide(to p.PState, by string) { n.State, n.DecidedBy = to, by }
