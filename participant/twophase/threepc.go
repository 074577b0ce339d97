package twophase

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/threepc"
	"github.com/concordtm/concord/participant"
)

// ThreePCConfig sets a 3PC participant's timeouts. Both must be longer
// than the coordinator's deadline (the transaction's timeout) plus a round
// trip, or a participant will often decide before the coordinator does.
type ThreePCConfig struct {
	// VoteTimeout: a branch that said it can commit and hears no
	// pre-commit within this long aborts (default 30s).
	VoteTimeout time.Duration
	// DecisionTimeout: a pre-committed branch that hears neither do-commit
	// nor abort within this long commits on its own (default 60s).
	DecisionTimeout time.Duration
	// Logger receives one line per decision taken on a timeout, and the
	// sweeper's errors; nil discards them.
	Logger *slog.Logger

	// Termination turns on Skeen's termination protocol: a branch whose
	// timeout fires asks its peers (the other branches the coordinator
	// named in Concord-Peers) for their state instead of deciding alone:
	// any committed → commit; any aborted or not pre-committed (itself
	// included) → abort; all pre-committed → commit. A peer that does not
	// answer within AskTimeout is taken for crashed. Off by default. It
	// removes the divergence of a coordinator crash between two
	// pre-commits, not that of a partition (see docs/protocols.md).
	Termination bool
	// AskTimeout bounds the collection of the peers' answers (default 5s).
	AskTimeout time.Duration
	// PeerClient sends the state queries (default: participant.AskPeer's
	// choice by scheme); AskTimeout bounds them either way.
	PeerClient *http.Client
}

// ThreePC is the participant side of a three-phase commit over a Store:
// it runs the pure participant machine (internal/protocol/threepc) and
// carries its effects out on the Store's table and r's business code:
//
//	can-commit  r.CanCommit (no work, no transaction); yes: voted, in memory
//	pre-commit  r.Check and the intent in one local transaction, state
//	            precommitted (like a 2PC prepare); arms the decision timer
//	do-commit   r.Apply, state committed
//	abort       r.Undo if the branch pre-committed, state aborted
//
// The machine's timers are kept by the sweeper (Run, or SweepOnce), with
// the Store's clock (WithClock): a voted branch that hears no pre-commit
// within VoteTimeout is recorded aborted, so a late pre-commit is refused;
// a precommitted branch that hears nothing within DecisionTimeout commits
// (r.Apply, with Op do-commit): the seeds' 3PC, which never blocks and can
// diverge (see docs/protocols.md). After a restart of the process, the
// first sweep finds the precommitted branches in the table and gives each
// a fresh DecisionTimeout. A vote is not durable: after a restart it is
// forgotten, and a pre-commit of that branch is refused.
//
// A peer's state query (Concord-Op: state) is answered from the same
// machine (AnswerPeer): a branch that has not pre-committed (no vote, or a vote
// kept in memory) is aborted durably first, so that it can never be
// pre-committed later, and answers "aborted". With
// ThreePCConfig.Termination a timeout asks the peers first (Skeen's
// termination protocol; see ThreePCConfig).
type ThreePC struct {
	s      *Store
	r      Resource
	cfg    ThreePCConfig
	log    *slog.Logger
	client *http.Client

	mu       sync.Mutex
	votes    map[branchKey]vote  // voted branches
	timers   map[branchKey]int64 // precommitted branches: when they commit on their own
	restored bool                // the table's precommitted branches have timers
}

// vote is a voted branch, kept in memory only: when its vote times out
// (unix ns) and the peers its can-commit named.
type vote struct {
	at    int64
	peers []participant.Peer
}

type branchKey struct{ gid, branch string }

// ThreePC returns the 3PC participant of s with business code r (Check,
// Apply and Undo are required; CanCommit is optional).
func (s *Store) ThreePC(r Resource, cfg ThreePCConfig) (*ThreePC, error) {
	if r.Check == nil || r.Apply == nil || r.Undo == nil {
		return nil, errors.New("twophase: ThreePC: Resource needs Check, Apply and Undo")
	}
	if cfg.VoteTimeout <= 0 {
		cfg.VoteTimeout = 30 * time.Second
	}
	if cfg.DecisionTimeout <= 0 {
		cfg.DecisionTimeout = 60 * time.Second
	}
	if cfg.AskTimeout <= 0 {
		cfg.AskTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ThreePC{s: s, r: r, cfg: cfg, log: log, client: cfg.PeerClient, votes: map[branchKey]vote{}, timers: map[branchKey]int64{}}, nil
}

// Handler serves the participant's single URL: 200 for yes and
// acknowledgements, 409 for a no or a refusal (the machine's rejected
// reply), 500 when the database or the business code failed (the
// coordinator retries), 400 for a request without the branch headers or
// with an operation that is not 3PC's.
// A state query (Concord-Op: state, from a peer) is answered by AnswerPeer:
// 200 with Concord-State.
func (t *ThreePC) Handler() http.Handler { return serve(t.HandlerFunc(), t.AnswerPeer) }

// HandlerFunc is Handler's logic as a participant.HandlerFunc.
func (t *ThreePC) HandlerFunc() participant.HandlerFunc {
	return func(ctx context.Context, b participant.Branch, payload []byte) error {
		switch b.Op {
		case participant.OpCanCommit, participant.OpPreCommit, participant.OpDoCommit, participant.OpAbort:
		default:
			return fmt.Errorf("%w: operation %q is not can-commit, pre-commit, do-commit or abort", participant.ErrInvalidBranch, b.Op)
		}
		if err := validate(b); err != nil {
			return err
		}
		return t.step(ctx, b, payload)
	}
}

// errRaced: the branch's row changed between reading its state and acting
// on it; the step is taken again from the new state.
var errRaced = errors.New("twophase: branch changed concurrently")

// step delivers one coordinator message to the branch's machine.
func (t *ThreePC) step(ctx context.Context, b participant.Branch, payload []byte) error {
	for range 3 {
		pt, err := t.load(ctx, b)
		if err != nil {
			return err
		}
		ev := protocol.Message{Now: t.s.now().UnixNano(), Op: protocol.Op(b.Op), Yes: true}
		var no error // the business's no, with its reason
		if b.Op == participant.OpCanCommit && pt.State == protocol.PInit && t.r.CanCommit != nil {
			if err := t.r.CanCommit(ctx, b, payload); errors.Is(err, participant.ErrRejected) {
				ev.Yes, no = false, err
			} else if err != nil {
				return err
			}
		}
		next, fx, err := pt.Step(ev)
		if err != nil {
			return fmt.Errorf("%w: %v", participant.ErrInvalidBranch, err)
		}
		err = t.carryOut(ctx, b, payload, next, fx)
		switch {
		case errors.Is(err, errRaced):
			continue
		case no != nil && errors.Is(err, participant.ErrRejected):
			return no
		}
		return err
	}
	return fmt.Errorf("twophase: %s: the branch keeps changing under it; retry", describe(string(b.Op), b))
}

// load builds the branch's machine from the table, or from the in-memory
// vote.
func (t *ThreePC) load(ctx context.Context, b participant.Branch) (threepc.Participant, error) {
	pt := threepc.Participant{
		ID: b.BranchID, VoteTimeout: int64(t.cfg.VoteTimeout), DecisionTimeout: int64(t.cfg.DecisionTimeout),
		AskTimeout: int64(t.cfg.AskTimeout), Termination: t.cfg.Termination,
		State: protocol.PInit,
	}
	st, err := t.s.State(ctx, b.GID, b.BranchID)
	if err != nil {
		return pt, err
	}
	switch st {
	case StateNone:
		t.mu.Lock()
		if _, ok := t.votes[branchKey{b.GID, b.BranchID}]; ok {
			pt.State = protocol.PVoted
		}
		t.mu.Unlock()
	case StatePreCommitted:
		pt.State = protocol.PPreCommitted
	case StateCommitted:
		pt.State = protocol.PCommitted
	case StateAborted:
		pt.State = protocol.PAborted
	default:
		return pt, fmt.Errorf("%w: %s/%s is a 2pc branch here (state %s)", participant.ErrInvalidBranch, b.GID, b.BranchID, st)
	}
	return pt, nil
}

// carryOut runs the machine's effects in order. A local effect (Work,
// CommitLocal, AbortLocal) and the Persist after it are one local
// transaction; a Persist alone is the record of an abort that undoes
// nothing. The reply is the returned error: nil for success, one wrapping
// participant.ErrRejected for rejected.
func (t *ThreePC) carryOut(ctx context.Context, b participant.Branch, payload []byte, next threepc.Participant, fx []protocol.Effect) error {
	var local protocol.Effect
	var reply error
	k := branchKey{b.GID, b.BranchID}
	for _, f := range fx {
		switch f := f.(type) {
		case protocol.Work, protocol.CommitLocal, protocol.AbortLocal:
			local = f
		case protocol.Persist:
			if err := t.persist(ctx, b, payload, local, next.State); err != nil {
				if errors.Is(err, participant.ErrRejected) {
					reply = err // the work said no, or the branch ended otherwise
					t.forget(k)
					return reply
				}
				return err
			}
			local = nil
		case protocol.Reply:
			if f.Outcome != protocol.OutcomeSuccess {
				reply = participant.Reject("%s: branch is %s", describe(string(b.Op), b), next.State)
			}
		case protocol.Arm:
			t.mu.Lock()
			if next.State == protocol.PVoted {
				t.votes[k] = vote{at: f.At, peers: b.Peers}
			} else {
				t.timers[k] = f.At
			}
			t.mu.Unlock()
		}
	}
	t.mu.Lock()
	switch next.State {
	case protocol.PVoted:
		delete(t.timers, k)
	case protocol.PPreCommitted:
		delete(t.votes, k)
	default:
		delete(t.votes, k)
		delete(t.timers, k)
	}
	t.mu.Unlock()
	return reply
}

func (t *ThreePC) forget(k branchKey) {
	t.mu.Lock()
	delete(t.votes, k)
	delete(t.timers, k)
	t.mu.Unlock()
}

// persist makes the machine's new state durable together with the local
// effect before it.
func (t *ThreePC) persist(ctx context.Context, b participant.Branch, payload []byte, local protocol.Effect, to protocol.PState) error {
	switch local.(type) {
	case protocol.Work:
		err := t.s.prepareAs(ctx, StatePreCommitted, b, func(ctx context.Context, tx *sql.Tx) error {
			err := t.r.Check(ctx, tx, b, payload)
			if errors.Is(err, participant.ErrReadOnly) {
				return fmt.Errorf("twophase: %s: 3pc has no read-only vote: %v", describe("pre-commit", b), err)
			}
			return err
		}, payload)
		if err == nil {
			// Repeated deliveries and the branches a racing abort ended
			// land here too: answer from the row.
			if st, serr := t.s.State(ctx, b.GID, b.BranchID); serr == nil && st != StatePreCommitted && st != StateCommitted {
				return participant.Reject("%s: branch is %s", describe("pre-commit", b), st)
			}
		}
		return err
	case protocol.CommitLocal:
		err := t.s.Commit(ctx, b, func(ctx context.Context, tx *sql.Tx, intent []byte) error {
			return t.r.Apply(ctx, tx, b, intent)
		})
		if errors.Is(err, ErrNotPrepared) {
			return fmt.Errorf("%w: %v", participant.ErrRejected, err)
		}
		return err
	case protocol.AbortLocal:
		err := t.s.Abort(ctx, b, func(ctx context.Context, tx *sql.Tx, intent []byte) error {
			return t.r.Undo(ctx, tx, b, intent)
		})
		if errors.Is(err, ErrAlreadyCommitted) {
			return fmt.Errorf("%w: %v", participant.ErrRejected, err)
		}
		return err
	}
	if to != protocol.PAborted {
		return fmt.Errorf("twophase: %s: nothing to persist for state %s", describe(string(b.Op), b), to)
	}
	// An abort of a branch that did no work: record it, so that a late
	// pre-commit is refused. If a row appeared meanwhile, step again.
	inserted, err := t.s.nullAbort(ctx, b)
	if err == nil && !inserted {
		return errRaced
	}
	return err
}

// Run sweeps every interval until ctx ends (then it returns ctx.Err()):
// it carries out the timeouts that are due. Run it in the background for
// as long as the handler serves; an interval of a tenth of the shorter
// timeout keeps decisions close to their time.
func (t *ThreePC) Run(ctx context.Context, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if _, err := t.SweepOnce(ctx); err != nil {
			t.log.Error("twophase 3pc sweep", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Sweep counts what one sweep decided.
type Sweep struct {
	Committed int // precommitted branches that committed on their timeout
	Aborted   int // voted branches that aborted on their timeout
}

// SweepOnce fires every timer due by the Store's clock. The first sweep
// also arms a timer for each precommitted branch in the table that has
// none (the process restarted): the machine's Restart, a full
// DecisionTimeout from now. Errors on single branches are joined; their
// timers stay due for the next sweep.
func (t *ThreePC) SweepOnce(ctx context.Context) (Sweep, error) {
	var rep Sweep
	now := t.s.now().UnixNano()
	t.mu.Lock()
	restored := t.restored
	t.mu.Unlock()
	if !restored {
		list, err := t.s.precommitted(ctx)
		if err != nil {
			return rep, err
		}
		t.mu.Lock()
		for _, p := range list {
			k := branchKey{p.GID, p.BranchID}
			if _, ok := t.timers[k]; ok {
				continue
			}
			_, fx, _ := threepc.Participant{State: protocol.PPreCommitted, DecisionTimeout: int64(t.cfg.DecisionTimeout)}.Step(protocol.Restart{Now: now})
			for _, f := range fx {
				if a, ok := f.(protocol.Arm); ok {
					t.timers[k] = a.At
				}
			}
		}
		t.restored = true
		t.mu.Unlock()
	}
	var due []branchKey
	t.mu.Lock()
	for k, v := range t.votes {
		if v.at <= now {
			due = append(due, k)
		}
	}
	for k, at := range t.timers {
		if at <= now {
			due = append(due, k)
		}
	}
	t.mu.Unlock()
	var errs []error
	for _, k := range due {
		to, err := t.fire(ctx, k, now)
		switch {
		case err != nil:
			errs = append(errs, err)
		case to == protocol.PCommitted:
			rep.Committed++
			t.log.Info("3pc branch committed on its timeout (no word from the coordinator)", "gid", k.gid, "branch", k.branch, "termination", t.cfg.Termination)
		case to == protocol.PAborted:
			rep.Aborted++
			t.log.Info("3pc branch aborted on its timeout (no word from the coordinator)", "gid", k.gid, "branch", k.branch, "termination", t.cfg.Termination)
		}
	}
	return rep, errors.Join(errs...)
}

// due reports whether the timer of the branch's current state has passed.
func (t *ThreePC) due(k branchKey, st protocol.PState, now int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st == protocol.PVoted {
		v, ok := t.votes[k]
		return ok && v.at <= now
	}
	at, ok := t.timers[k]
	return ok && at <= now
}

// fire delivers the timeout to one branch and returns the state it
// decided on ("" when the timer was left over).
func (t *ThreePC) fire(ctx context.Context, k branchKey, now int64) (protocol.PState, error) {
	b := participant.Branch{GID: k.gid, BranchID: k.branch, Op: participant.OpDoCommit, Mode: string(protocol.ModeThreePC)}
	for range 3 {
		pt, err := t.load(ctx, b)
		if err != nil {
			return "", err
		}
		if !t.due(k, pt.State, now) {
			return "", nil // the coordinator's word moved the branch on
		}
		var peers []participant.Peer
		if t.cfg.Termination {
			if peers, err = t.peersOf(ctx, k, pt.State); err != nil {
				return "", err
			}
			for _, p := range peers {
				pt.Peers = append(pt.Peers, p.Branch)
			}
		}
		next, fx, err := pt.Step(protocol.Timeout{Now: now})
		if err != nil {
			return "", err
		}
		if slices.ContainsFunc(fx, isAskPeers) {
			if next, fx, err = t.terminate(ctx, b, next, peers); err != nil {
				return "", err
			}
		}
		b.Op = participant.OpAbort
		if next.State == protocol.PCommitted {
			b.Op = participant.OpDoCommit
		}
		err = t.carryOut(ctx, b, nil, next, fx)
		switch {
		case errors.Is(err, errRaced):
			continue
		case errors.Is(err, participant.ErrRejected):
			return "", nil // the coordinator's word arrived first
		case err != nil:
			return "", err
		}
		return next.State, nil
	}
	return "", fmt.Errorf("twophase: timeout of %s/%s: the branch keeps changing; next sweep", k.gid, k.branch)
}
