package twophase

import (
	"context"
	"errors"
	"fmt"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/threepc"
	"github.com/concordtm/concord/participant"
)

// This file is the 3PC participant's side of Skeen's termination
// protocol: answering a peer's state query, and asking the peers when a
// timeout fires. The rules are the pure machine's (threepc.Participant);
// this only carries its AskPeers and AnswerPeer effects out.

// AnswerPeer answers a peer's state query about branch b (its Op is
// participant.OpState): the machine's PeerQuery. A branch that has not
// pre-committed (no vote, or a vote in memory) is recorded aborted first,
// durably, so that a later can-commit or pre-commit is refused, and
// answers "aborted"; otherwise the answer is the branch's state.
func (t *ThreePC) AnswerPeer(ctx context.Context, b participant.Branch) (participant.PeerState, error) {
	if err := validate(b); err != nil {
		return "", err
	}
	b.Op = participant.OpAbort // what a recorded abort is, in errors and logs
	for range 3 {
		pt, err := t.load(ctx, b)
		if err != nil {
			return "", err
		}
		next, fx, err := pt.Step(protocol.PeerQuery{Now: t.s.now().UnixNano(), From: "peer"})
		if err != nil {
			return "", err
		}
		var answer participant.PeerState
		for _, f := range fx {
			if a, ok := f.(protocol.AnswerPeer); ok {
				answer = participant.PeerState(a.State)
			}
		}
		err = t.carryOut(ctx, b, nil, next, fx)
		switch {
		case errors.Is(err, errRaced):
			continue // pre-committed meanwhile: answer from the new state
		case err != nil:
			return "", err
		}
		return answer, nil
	}
	return "", fmt.Errorf("twophase: state of %s/%s: the branch keeps changing; ask again", b.GID, b.BranchID)
}

func isAskPeers(f protocol.Effect) bool { _, ok := f.(protocol.AskPeers); return ok }

// peersOf returns the peers the coordinator named for the branch: with the
// vote in memory, or with the pre-committed row.
func (t *ThreePC) peersOf(ctx context.Context, k branchKey, st protocol.PState) ([]participant.Peer, error) {
	if st == protocol.PVoted {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.votes[k].peers, nil
	}
	return t.s.Peers(ctx, k.gid, k.branch)
}

// terminate carries out the machine's AskPeers: it asks every peer at
// once, steps each answer in as it comes, and when AskTimeout passes
// before the machine has decided, steps the ask timer's Timeout (the
// peers that did not answer are taken for crashed). pt is the machine
// after the Timeout that asked; the result is the decided machine and the
// effects that carry the decision out.
func (t *ThreePC) terminate(ctx context.Context, b participant.Branch, pt threepc.Participant, peers []participant.Peer) (threepc.Participant, []protocol.Effect, error) {
	actx, cancel := context.WithTimeout(ctx, t.cfg.AskTimeout)
	defer cancel()
	type answer struct {
		from string
		st   participant.PeerState
		err  error
	}
	answers := make(chan answer, len(peers))
	for _, p := range peers {
		go func() {
			st, err := participant.AskPeer(actx, t.client, b.GID, string(protocol.ModeThreePC), p)
			answers <- answer{p.Branch, st, err}
		}()
	}
	for range peers {
		a := <-answers // every ask ends by actx's deadline
		if a.err != nil {
			t.log.Warn("3pc termination: a peer gave no answer", "gid", b.GID, "branch", b.BranchID, "peer", a.from, "err", a.err)
			continue
		}
		next, fx, err := pt.Step(protocol.PeerAnswer{Now: t.s.now().UnixNano(), From: a.from, State: protocol.PState(a.st)})
		if err != nil {
			return pt, nil, err
		}
		pt = next
		if pt.State.Decided() {
			return pt, fx, nil
		}
	}
	if ctx.Err() != nil {
		return pt, nil, ctx.Err()
	}
	// Not settled by the answers (some peers did not answer): the ask
	// timer fires, and the machine decides on what it heard.
	return pt.Step(protocol.Timeout{Now: t.s.now().UnixNano()})
}
