package twophase

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/twopc"
	"github.com/concordtm/concord/participant"
)

// This file is the 2PC participant's side of the cooperative termination
// protocol: answering a peer's state query (AnswerPeer), and a Resolver
// that ends the prepared branches whose decision never came, by asking the
// coordinator and, with Termination, the peers. The rules are the pure
// machine's (twopc.Participant); this carries its effects out.

// StateReadOnly is a 2PC branch that voted read-only while the
// coordinator named peers: nothing is held, but the vote was a yes, so a
// peer's state query must hear "voted" (uncertain), not the "aborted" a
// branch with no row gets. A Commit or Abort ends it without running
// anything.
const StateReadOnly State = "readonly"

// machineState maps a 2PC branch's row to the machine's state.
func machineState(st State, gid, branch string) (protocol.PState, error) {
	switch st {
	case StateNone:
		return protocol.PInit, nil
	case StatePrepared, StateReadOnly:
		return protocol.PVoted, nil
	case StateCommitted:
		return protocol.PCommitted, nil
	case StateAborted:
		return protocol.PAborted, nil
	}
	return "", fmt.Errorf("%w: %s/%s is a 3pc branch here (state %s)", participant.ErrInvalidBranch, gid, branch, st)
}

// AnswerPeer answers a peer's state query about 2PC branch b: the
// machine's PeerQuery. A branch that has not voted here is recorded
// aborted first (durably: a later prepare is refused) and answers
// "aborted"; a prepared or read-only branch answers "voted" (uncertain); a
// decided one its outcome.
func (s *Store) AnswerPeer(ctx context.Context, b participant.Branch) (participant.PeerState, error) {
	if err := validate(b); err != nil {
		return "", err
	}
	for range 3 {
		st, err := s.State(ctx, b.GID, b.BranchID)
		if err != nil {
			return "", err
		}
		ps, err := machineState(st, b.GID, b.BranchID)
		if err != nil {
			return "", err
		}
		next, fx, err := twopc.Participant{ID: b.BranchID, State: ps}.Step(protocol.PeerQuery{Now: s.now().UnixNano(), From: "peer"})
		if err != nil {
			return "", err
		}
		if slices.ContainsFunc(fx, func(f protocol.Effect) bool { _, ok := f.(protocol.Persist); return ok }) {
			// Not voted: abort it for good before answering.
			inserted, err := s.nullAbort(ctx, b)
			if err != nil {
				return "", err
			}
			if !inserted {
				continue // a prepare got in first: answer from its row
			}
		}
		return participant.PeerState(next.State), nil
	}
	return "", fmt.Errorf("twophase: state of %s/%s: the branch keeps changing; ask again", b.GID, b.BranchID)
}

// Resolver ends a 2PC participant's prepared branches whose decision did
// not come (the coordinator crashed, the phase-two call was lost, this
// process restarted). For each branch prepared longer ago than MinAge it
// runs the machine's decision timeout: it asks the coordinator (Decide)
// and, with Termination, the peers the coordinator named at prepare (the
// cooperative termination protocol): a peer that committed or aborted
// tells the outcome, a peer that has not voted aborts on being asked and
// says so. If every peer is prepared too (uncertain), or does not answer,
// nothing is learnt and the branch stays prepared until the next scan: it
// never decides alone.
type Resolver struct {
	Store    *Store
	Resource Resource // Apply and Undo end the branch
	// Decide asks the coordinator for gid's decision, usually
	// client.Client.Decision: "commit", "abort" or "pending". An error (the
	// coordinator is down) is no answer.
	Decide func(ctx context.Context, gid string) (string, error)
	// MinAge leaves a freshly prepared branch to its coordinator (by the
	// Store's clock and the branch's prepared_at).
	MinAge time.Duration
	// Termination asks the peers too. Off by default.
	Termination bool
	// AskTimeout bounds the question to the coordinator and, apart, the
	// collection of the peers' answers (default 5s).
	AskTimeout time.Duration
	// PeerClient sends the state queries (default: participant.AskPeer's
	// choice by scheme).
	PeerClient *http.Client
	// Logger receives one line per branch ended and per error; nil
	// discards them.
	Logger *slog.Logger
}

// Resolution counts what one scan did.
type Resolution struct {
	Committed, Aborted int // by the coordinator's answer or a peer's
	ByPeers            int // of those, learnt from a peer
	Blocked            int // still prepared: nobody knew
}

// Run scans every interval until ctx ends (then it returns ctx.Err()).
func (r *Resolver) Run(ctx context.Context, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if _, err := r.ResolveOnce(ctx); err != nil {
			r.logger().Error("twophase resolver", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (r *Resolver) askTimeout() time.Duration {
	if r.AskTimeout <= 0 {
		return 5 * time.Second
	}
	return r.AskTimeout
}

func (r *Resolver) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// ResolveOnce runs one scan. Errors on single branches are joined; those
// branches stay prepared for the next scan.
func (r *Resolver) ResolveOnce(ctx context.Context) (Resolution, error) {
	var rep Resolution
	if r.Store == nil || r.Decide == nil || r.Resource.Apply == nil || r.Resource.Undo == nil {
		return rep, errors.New("twophase: Resolver needs Store, Decide, Resource.Apply and Resource.Undo")
	}
	list, err := r.Store.Pending(ctx)
	if err != nil {
		return rep, err
	}
	now := r.Store.now()
	var errs []error
	for _, p := range list {
		if now.Sub(p.PreparedAt) < r.MinAge {
			continue
		}
		to, by, err := r.resolve(ctx, p)
		switch {
		case err != nil:
			errs = append(errs, err)
		case to == protocol.PCommitted:
			rep.Committed++
		case to == protocol.PAborted:
			rep.Aborted++
		default:
			rep.Blocked++
		}
		if to.Decided() {
			if by == "peers" {
				rep.ByPeers++
			}
			r.logger().Info("2pc branch resolved", "gid", p.GID, "branch", p.BranchID, "outcome", to, "by", by)
		}
	}
	return rep, errors.Join(errs...)
}

// resolve runs the machine's decision timeout for one prepared branch.
func (r *Resolver) resolve(ctx context.Context, p Prepared) (protocol.PState, string, error) {
	s := r.Store
	pt := twopc.Participant{ID: p.BranchID, Termination: r.Termination, State: protocol.PVoted}
	var peers []participant.Peer
	if r.Termination {
		var err error
		if peers, err = s.Peers(ctx, p.GID, p.BranchID); err != nil {
			return "", "", err
		}
		for _, q := range peers {
			pt.Peers = append(pt.Peers, q.Branch)
		}
	}
	pt, fx, err := pt.Step(protocol.Timeout{Now: s.now().UnixNano()})
	if err != nil {
		return "", "", err
	}
	if slices.ContainsFunc(fx, func(f protocol.Effect) bool { _, ok := f.(protocol.AskCoordinator); return ok }) {
		dctx, cancel := context.WithTimeout(ctx, r.askTimeout())
		d, err := r.Decide(dctx, p.GID)
		cancel()
		if err != nil {
			r.logger().Warn("2pc resolver: the coordinator gave no answer", "gid", p.GID, "err", err)
		} else {
			next, dfx, err := pt.Step(protocol.DecisionAnswer{Now: s.now().UnixNano(), Decision: protocol.Decision(d)})
			if err != nil {
				return "", "", err
			}
			if next.State.Decided() {
				return r.carryOut(ctx, p, next, dfx)
			}
		}
	}
	if slices.ContainsFunc(fx, isAskPeers) {
		next, pfx := r.askPeers(ctx, p, pt, peers)
		if next.State.Decided() {
			return r.carryOut(ctx, p, next, pfx)
		}
	}
	return protocol.PVoted, "", nil
}

// askPeers asks every peer at once and steps their answers in until one
// settles the outcome or AskTimeout passes.
func (r *Resolver) askPeers(ctx context.Context, p Prepared, pt twopc.Participant, peers []participant.Peer) (twopc.Participant, []protocol.Effect) {
	hc := r.PeerClient
	actx, cancel := context.WithTimeout(ctx, r.askTimeout())
	defer cancel()
	type answer struct {
		from string
		st   participant.PeerState
		err  error
	}
	answers := make(chan answer, len(peers))
	for _, q := range peers {
		go func() {
			st, err := participant.AskPeer(actx, hc, p.GID, string(protocol.ModeTwoPC), q)
			answers <- answer{q.Branch, st, err}
		}()
	}
	for range peers {
		a := <-answers // every ask ends by actx's deadline
		if a.err != nil {
			r.logger().Warn("2pc termination: a peer gave no answer", "gid", p.GID, "branch", p.BranchID, "peer", a.from, "err", a.err)
			continue
		}
		next, fx, err := pt.Step(protocol.PeerAnswer{Now: r.Store.now().UnixNano(), From: a.from, State: protocol.PState(a.st)})
		if err != nil {
			continue
		}
		pt = next
		if pt.State.Decided() {
			return pt, fx
		}
	}
	return pt, nil
}

// carryOut ends the branch as the machine decided: CommitLocal and its
// Persist are Commit with Apply, AbortLocal and its Persist Abort with
// Undo.
func (r *Resolver) carryOut(ctx context.Context, p Prepared, next twopc.Participant, fx []protocol.Effect) (protocol.PState, string, error) {
	b := participant.Branch{GID: p.GID, BranchID: p.BranchID, Mode: string(protocol.ModeTwoPC)}
	var err error
	for _, f := range fx {
		switch f.(type) {
		case protocol.CommitLocal:
			b.Op = participant.OpCommit
			err = r.Store.Commit(ctx, b, func(ctx context.Context, tx *sql.Tx, intent []byte) error {
				return r.Resource.Apply(ctx, tx, b, intent)
			})
		case protocol.AbortLocal:
			b.Op = participant.OpAbort
			err = r.Store.Abort(ctx, b, func(ctx context.Context, tx *sql.Tx, intent []byte) error {
				return r.Resource.Undo(ctx, tx, b, intent)
			})
		}
	}
	if err != nil {
		return "", "", err
	}
	return next.State, next.DecidedBy, nil
}
