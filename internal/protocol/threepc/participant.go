package threepc

import (
	"fmt"
	"slices"

	p "github.com/concordtm/concord/internal/protocol"
)

// Participant is one 3PC participant as a pure state machine. Its zero
// value with ID, Peers and the timeouts set is a participant that has
// heard nothing. Step never modifies its receiver; it returns the next
// value and the effects to carry out, in order (a Persist must be durable
// before the effects after it run).
//
// States: init → voted (said it can commit; no work done) → precommitted
// (did the work, logged undo/redo durably, acknowledged) → committed; any
// undecided state → aborted.
//
// Timeouts (the lecture's and the article's behaviour): a voted participant
// that hears no pre-commit within VoteTimeout aborts; a precommitted one
// that hears no do-commit within DecisionTimeout commits. Neither ever
// blocks, and they can disagree (see the package doc).
//
// With Termination set, a participant whose timer fires asks its peers
// instead (Skeen's termination protocol, for sites that fail by crashing):
// if any peer committed, it commits; if any aborted or has not
// pre-committed (init or voted, itself included), it aborts; if every peer
// answered precommitted, it commits. When AskTimeout passes before that is
// settled it decides on what it has: the peers that did not answer are
// taken as crashed, so with all the answers it got (and itself)
// precommitted it commits, and otherwise aborts. Across a partition two
// sides can therefore decide differently.
type Participant struct {
	ID              string
	Peers           []string // the other participants' ids
	Termination     bool
	VoteTimeout     int64 // ns: voted, waiting for pre-commit
	DecisionTimeout int64 // ns: precommitted, waiting for do-commit
	AskTimeout      int64 // ns: how long to collect peers' answers

	State   p.PState
	Asking  bool          // waiting for peers' answers
	Answers []p.PeerState // answers so far, by peer id
	// DecidedBy says how the outcome was reached: "coordinator",
	// "timeout" or "peers".
	DecidedBy string
}

// Step applies ev and returns the new participant and the effects.
func (pt Participant) Step(ev p.PEvent) (Participant, []p.Effect, error) {
	n := pt
	if n.State == "" {
		n.State = p.PInit
	}
	n.Peers = slices.Clone(pt.Peers)
	n.Answers = slices.Clone(pt.Answers)
	var fx []p.Effect
	var err error
	switch e := ev.(type) {
	case p.Message:
		fx, err = n.message(e)
	case p.Timeout:
		fx = n.timeout(e.Now)
	case p.PeerQuery:
		if n.State == p.PInit || n.State == p.PVoted {
			// Not pre-committed: the asker will abort on this answer, so
			// abort first; a later pre-commit is then refused instead of
			// acknowledged, and the coordinator cannot commit.
			n.decide(p.PAborted, "peers")
			fx = append(fx, p.Persist{})
		}
		fx = append(fx, p.AnswerPeer{To: e.From, State: n.State})
	case p.PeerAnswer:
		fx = n.answer(e)
	case p.Restart:
		n.Asking, n.Answers = false, nil
		switch n.State {
		case p.PPreCommitted:
			fx = []p.Effect{p.Arm{At: e.Now + n.DecisionTimeout}}
		case p.PVoted:
			// A vote is not written: after a restart it is forgotten.
			n.State = p.PInit
		}
	default:
		err = fmt.Errorf("%w: 3pc participant: event %T", p.ErrInvalidEvent, ev)
	}
	if err != nil {
		return pt, nil, err
	}
	return n, fx, nil
}

func (n *Participant) message(m p.Message) ([]p.Effect, error) {
	reply := func(o p.Outcome) p.Effect { return p.Reply{Op: m.Op, Outcome: o} }
	switch m.Op {
	case p.OpCanCommit:
		switch n.State {
		case p.PInit:
			if !m.Yes {
				n.decide(p.PAborted, "coordinator")
				return []p.Effect{reply(p.OutcomeRejected)}, nil
			}
			n.State = p.PVoted
			return []p.Effect{reply(p.OutcomeSuccess), p.Arm{At: m.Now + n.VoteTimeout}}, nil
		case p.PAborted:
			return []p.Effect{reply(p.OutcomeRejected)}, nil
		}
		return []p.Effect{reply(p.OutcomeSuccess)}, nil // a repeat
	case p.OpPreCommit:
		switch n.State {
		case p.PVoted:
			n.State, n.Asking, n.Answers = p.PPreCommitted, false, nil
			return []p.Effect{p.Work{}, p.Persist{}, reply(p.OutcomeSuccess), p.Arm{At: m.Now + n.DecisionTimeout}}, nil
		case p.PPreCommitted, p.PCommitted:
			return []p.Effect{reply(p.OutcomeSuccess)}, nil // a repeat, or committed on a timeout
		case p.PInit:
			// Never said yes, or forgot it in a restart: refuse, and stay
			// refused (a late can-commit must not start it again).
			n.decide(p.PAborted, "coordinator")
			return []p.Effect{p.Persist{}, reply(p.OutcomeRejected)}, nil
		}
		return []p.Effect{reply(p.OutcomeRejected)}, nil
	case p.OpDoCommit:
		switch n.State {
		case p.PPreCommitted:
			n.decide(p.PCommitted, "coordinator")
			return []p.Effect{p.CommitLocal{}, p.Persist{}, reply(p.OutcomeSuccess)}, nil
		case p.PCommitted:
			return []p.Effect{reply(p.OutcomeSuccess)}, nil
		}
		// Aborted (on a timeout: the divergence), or never did the work.
		return []p.Effect{reply(p.OutcomeRejected)}, nil
	case p.OpAbort:
		switch n.State {
		case p.PCommitted:
			return []p.Effect{reply(p.OutcomeRejected)}, nil
		case p.PAborted:
			return []p.Effect{reply(p.OutcomeSuccess)}, nil
		}
		fx := []p.Effect{}
		if n.State == p.PPreCommitted {
			fx = append(fx, p.AbortLocal{})
		}
		n.decide(p.PAborted, "coordinator")
		return append(fx, p.Persist{}, reply(p.OutcomeSuccess)), nil
	}
	return nil, fmt.Errorf("%w: 3pc participant: operation %q", p.ErrInvalidEvent, m.Op)
}

// timeout handles the participant's timer.
func (n *Participant) timeout(now int64) []p.Effect {
	switch {
	case n.State.Decided() || n.State == p.PInit:
		return nil // a timer left over
	case n.Asking:
		return n.settle(true)
	case n.Termination && len(n.Peers) > 0:
		n.Asking, n.Answers = true, nil
		return []p.Effect{p.AskPeers{}, p.Arm{At: now + n.AskTimeout}}
	case n.State == p.PVoted:
		n.decide(p.PAborted, "timeout")
		return []p.Effect{p.Persist{}}
	default: // precommitted
		n.decide(p.PCommitted, "timeout")
		return []p.Effect{p.CommitLocal{}, p.Persist{}}
	}
}

func (n *Participant) answer(a p.PeerAnswer) []p.Effect {
	if !n.Asking || n.State.Decided() || !slices.Contains(n.Peers, a.From) {
		return nil
	}
	i := slices.IndexFunc(n.Answers, func(x p.PeerState) bool { return x.ID == a.From })
	if i >= 0 {
		n.Answers[i].State = a.State
	} else {
		n.Answers = append(n.Answers, p.PeerState{ID: a.From, State: a.State})
	}
	return n.settle(false)
}

// settle applies the termination rule to the answers so far. final is set
// when the time to collect answers is over.
func (n *Participant) settle(final bool) []p.Effect {
	all := true // every answer so far, and this participant, precommitted
	for _, a := range n.Answers {
		switch a.State {
		case p.PCommitted:
			return n.terminate(p.PCommitted)
		case p.PAborted, p.PInit, p.PVoted:
			return n.terminate(p.PAborted)
		}
	}
	if n.State != p.PPreCommitted {
		all = false
	}
	switch {
	case !all && (final || len(n.Answers) == len(n.Peers)):
		return n.terminate(p.PAborted)
	case all && (final || len(n.Answers) == len(n.Peers)):
		return n.terminate(p.PCommitted)
	}
	return nil
}

func (n *Participant) terminate(to p.PState) []p.Effect {
	var fx []p.Effect
	if to == p.PCommitted {
		fx = append(fx, p.CommitLocal{})
	} else if n.State == p.PPreCommitted {
		fx = append(fx, p.AbortLocal{})
	}
	n.decide(to, "peers")
	return append(fx, p.Persist{})
}

func (n *Participant) decide(to p.PState, by string) {
	n.State, n.DecidedBy = to, by
	n.Asking, n.Answers = false, nil
}
