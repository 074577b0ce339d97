package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store"
)

// SagaSpec is a saga as submitted. Branch fields used: ID, ForwardURL
// (action), BackwardURL (compensate), Payload, After. Validation of URLs and
// sizes is the API layer's job; the coordinator checks structure.
type SagaSpec struct {
	GID        string
	Branches   []protocol.Branch
	Concurrent bool
	Options    protocol.Options
}

func specHash(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// nameBranches requires at least one branch, gives each branch without an
// id its position ("1", "2", ...), and rejects repeated ids.
func nameBranches(what string, branches []protocol.Branch) error {
	if len(branches) == 0 {
		return fmt.Errorf("%w: a %s needs at least one branch", ErrInvalid, what)
	}
	seen := make(map[string]bool, len(branches))
	for i := range branches {
		b := &branches[i]
		if b.ID == "" {
			b.ID = fmt.Sprint(i + 1)
		}
		if seen[b.ID] {
			return fmt.Errorf("%w: duplicate branch id %q", ErrInvalid, b.ID)
		}
		seen[b.ID] = true
	}
	return nil
}

// SubmitSaga durably accepts a saga and starts it. It returns once the
// saga is on disk (not when it finishes; see Wait). Resubmitting the same
// gid with the same content returns the existing transaction.
func (c *Coordinator) SubmitSaga(ctx context.Context, spec SagaSpec) (protocol.Txn, error) {
	minted := spec.GID == ""
	if minted {
		spec.GID = NewGID()
	}
	if err := nameBranches("saga", spec.Branches); err != nil {
		return protocol.Txn{}, err
	}
	for _, b := range spec.Branches {
		if !spec.Concurrent && len(b.After) > 0 {
			return protocol.Txn{}, fmt.Errorf("%w: branch %q: 'after' needs a concurrent saga", ErrInvalid, b.ID)
		}
	}
	hash := specHash(spec)
	t := protocol.Txn{
		GID: spec.GID, Mode: protocol.ModeSaga, Concurrent: spec.Concurrent,
		Options: withDefaults(spec.Options, c.cfg.Defaults), Branches: spec.Branches, SpecHash: hash,
	}
	return c.create(ctx, t, minted)
}

// TwoPCSpec is a two-phase commit transaction as submitted. Branch fields
// used: ID, ForwardURL (the participant's one URL), Payload.
type TwoPCSpec struct {
	GID      string
	Branches []protocol.Branch
	Options  protocol.Options
}

// ThreePCSpec is a three-phase commit transaction as submitted; its fields
// are those of TwoPCSpec.
type ThreePCSpec TwoPCSpec

// SubmitTwoPC durably accepts a 2PC transaction and starts its prepares.
func (c *Coordinator) SubmitTwoPC(ctx context.Context, spec TwoPCSpec) (protocol.Txn, error) {
	return c.submitCommit(ctx, protocol.ModeTwoPC, spec)
}

// SubmitThreePC durably accepts a 3PC transaction and asks every branch
// whether it can commit.
func (c *Coordinator) SubmitThreePC(ctx context.Context, spec ThreePCSpec) (protocol.Txn, error) {
	return c.submitCommit(ctx, protocol.ModeThreePC, TwoPCSpec(spec))
}

// submitCommit accepts an atomic commitment (2PC or 3PC): one URL per
// branch, all branches voting together.
func (c *Coordinator) submitCommit(ctx context.Context, mode protocol.Mode, spec TwoPCSpec) (protocol.Txn, error) {
	minted := spec.GID == ""
	if minted {
		spec.GID = NewGID()
	}
	if err := nameBranches(string(mode)+" transaction", spec.Branches); err != nil {
		return protocol.Txn{}, err
	}
	t := protocol.Txn{
		GID: spec.GID, Mode: mode, Options: withDefaults(spec.Options, c.cfg.Defaults),
		Branches: spec.Branches, SpecHash: specHash(spec),
	}
	return c.create(ctx, t, minted)
}

// Decision is what a 2PC participant in doubt is told.
type Decision string

// Decisions.
const (
	DecisionCommit  Decision = "commit"
	DecisionAbort   Decision = "abort"
	DecisionPending Decision = "pending"
)

// Decision tells a participant in doubt what was decided for gid, a 2PC or
// a 3PC transaction. Presumed abort: a gid with no record was never
// decided to commit. A 3PC transaction in its pre-commit phase is pending.
func (c *Coordinator) Decision(ctx context.Context, gid string) (Decision, error) {
	t, err := c.Get(ctx, gid)
	if errors.Is(err, ErrNotFound) {
		return DecisionAbort, nil
	}
	if err != nil {
		return "", err
	}
	if t.Mode != protocol.ModeTwoPC && t.Mode != protocol.ModeThreePC {
		return "", fmt.Errorf("%w: %s is a %s transaction; decisions are for 2pc and 3pc", protocol.ErrInvalidTransition, gid, t.Mode)
	}
	switch {
	case t.Status == protocol.StatusCommitting, t.Status == protocol.StatusSucceeded,
		t.Status == protocol.StatusStuck && t.StuckPhase == protocol.StatusCommitting:
		return DecisionCommit, nil
	case t.Status == protocol.StatusAborted:
		return DecisionAbort, nil
	}
	return DecisionPending, nil
}

// BeginTCC opens a TCC transaction.
func (c *Coordinator) BeginTCC(ctx context.Context, gid string, opts protocol.Options) (protocol.Txn, error) {
	minted := gid == ""
	if minted {
		gid = NewGID()
	}
	t := protocol.Txn{GID: gid, Mode: protocol.ModeTCC, Options: withDefaults(opts, c.cfg.Defaults), SpecHash: specHash(opts)}
	return c.create(ctx, t, minted)
}

// create makes a new transaction durable, or returns the existing one when
// the same gid was already used for the same content. A gid minted here
// (fresh) cannot be in the store, so the lookup is skipped.
func (c *Coordinator) create(ctx context.Context, t protocol.Txn, fresh bool) (protocol.Txn, error) {
	m := machineFor(t.Mode)
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return protocol.Txn{}, ErrClosed
		}
		e, ok := c.live[t.GID]
		if ok {
			c.mu.Unlock()
			e.mu.Lock()
			cur, broken, ch := e.durable, e.broken, e.changed
			e.mu.Unlock()
			if broken {
				continue // it is leaving the live set; look again
			}
			if cur.Status == protocol.StatusNew {
				// Another submission of this gid is being made durable;
				// wait for it, then look again.
				select {
				case <-ch:
				case <-ctx.Done():
					return protocol.Txn{}, ctx.Err()
				}
				continue
			}
			return sameOrConflict(cur, t)
		}
		e = newEntry(protocol.Txn{GID: t.GID}, m)
		e.mu.Lock()
		c.live[t.GID] = e
		c.mu.Unlock()
		nt, fx, w, err := c.createLocked(ctx, e, t, fresh)
		e.mu.Unlock()
		if err != nil || (fx == nil && w == nil) {
			return nt, err
		}
		nt, err = c.finish(ctx, e, protocol.Txn{}, nt, protocol.Submit{}, fx, w)
		if errors.Is(err, store.ErrConflict) {
			// Another instance created this gid first (or the store
			// refused the whole batch for a neighbour's conflict: then
			// there is nothing stored and we try again).
			cur, rerr := c.readStored(ctx, t.GID)
			if errors.Is(rerr, ErrNotFound) {
				fresh = false
				continue
			}
			if rerr != nil {
				return protocol.Txn{}, rerr
			}
			return sameOrConflict(cur, t)
		}
		return nt, err
	}
}

// createLocked runs with e.mu held and e registered as live with status new.
// On every path that does not create, it unregisters e.
func (c *Coordinator) createLocked(ctx context.Context, e *entry, t protocol.Txn, fresh bool) (protocol.Txn, []protocol.Effect, *pendingWrite, error) {
	drop := func() {
		c.mu.Lock()
		delete(c.live, t.GID)
		c.mu.Unlock()
		e.broken = true // anyone holding e looks again
		close(e.changed)
		e.changed = make(chan struct{})
	}
	rec, err := store.Record{}, store.ErrNotFound
	// On a shared store the first write is conditional (version 1: only
	// if absent), so the lookup is left to the conflict path.
	if !fresh && c.shared == nil {
		rec, err = c.store.Get(ctx, t.GID)
	}
	switch {
	case err == nil:
		drop()
		cur, derr := decode(rec.Data)
		if derr != nil {
			return protocol.Txn{}, nil, nil, derr
		}
		got, err := sameOrConflict(cur, t)
		return got, nil, nil, err
	case !errors.Is(err, store.ErrNotFound):
		drop()
		return protocol.Txn{}, nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	nt, fx, w, err := c.stepLocked(e, protocol.Submit{Now: now(), Txn: t})
	if err != nil {
		drop()
		if errors.Is(err, protocol.ErrInvalidEvent) {
			err = fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return protocol.Txn{}, nil, nil, err
	}
	return nt, fx, w, nil
}

func sameOrConflict(cur, want protocol.Txn) (protocol.Txn, error) {
	if cur.Mode != want.Mode || cur.SpecHash != want.SpecHash {
		return cur, fmt.Errorf("%w: %s is a %s transaction with different content (status %s)", ErrGIDConflict, cur.GID, cur.Mode, cur.Status)
	}
	return cur, nil
}

// entryFor returns the live entry for gid, loading an unfinished transaction
// from the store if needed. For a finished transaction it returns a
// detached entry (not registered as live).
func (c *Coordinator) entryFor(ctx context.Context, gid string) (*entry, error) {
	if e := c.lookup(gid); e != nil {
		return e, nil
	}
	if c.shared != nil {
		return c.adopt(ctx, gid)
	}
	rec, err := c.store.Get(ctx, gid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, gid)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	t, err := decode(rec.Data)
	if err != nil {
		return nil, err
	}
	e := newEntry(t, machineFor(t.Mode))
	if !t.Status.Final() {
		c.mu.Lock()
		if cur := c.live[gid]; cur != nil {
			e = cur
		} else {
			c.live[gid] = e
		}
		c.mu.Unlock()
	}
	return e, nil
}

// do delivers an API event to gid's transaction.
//
// On a shared store, this instance's copy may be stale: another instance
// took the transaction over since. The fenced write then fails, nothing of
// the step took effect (no call went out, no waiter saw it), and this
// instance lets the transaction go (ErrMoved). do then takes it over again
// from the store and applies the event to the current state, so the
// caller does not see the move; only a transaction that keeps moving
// (movedRetries times in a row) returns ErrMoved, which is retryable.
func (c *Coordinator) do(ctx context.Context, gid string, mode protocol.Mode, ev protocol.Event) (protocol.Txn, error) {
	for try := 0; ; try++ {
		t, err := c.doOnce(ctx, gid, mode, ev)
		if !errors.Is(err, ErrMoved) || c.shared == nil || try+1 >= movedRetries || ctx.Err() != nil {
			return t, err
		}
	}
}

// movedRetries bounds do's takeovers of a transaction that keeps moving.
const movedRetries = 3

func (c *Coordinator) doOnce(ctx context.Context, gid string, mode protocol.Mode, ev protocol.Event) (protocol.Txn, error) {
	e, err := c.entryFor(ctx, gid)
	if err != nil {
		return protocol.Txn{}, err
	}
	if mode != "" && e.machine.Mode != mode {
		return protocol.Txn{}, fmt.Errorf("%w: %s is a %s transaction, not %s", protocol.ErrInvalidTransition, gid, e.machine.Mode, mode)
	}
	t, err := c.apply(e, ev)
	if errors.Is(err, protocol.ErrInvalidEvent) {
		err = fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return t, err
}

// RegisterBranch adds a branch to an open TCC transaction. It returns once
// the registration is durable. With begin set, a TCC that does not exist
// yet is opened with those options in the same write.
//
// maxBranches (> 0) bounds how many branches the transaction may hold.
func (c *Coordinator) RegisterBranch(ctx context.Context, gid string, b protocol.Branch, begin *protocol.Options, maxBranches int) (protocol.Txn, error) {
	if b.ID == "" {
		return protocol.Txn{}, fmt.Errorf("%w: branch id is required", ErrInvalid)
	}
	if begin != nil && c.lookup(gid) == nil {
		t := protocol.Txn{
			GID: gid, Mode: protocol.ModeTCC, Options: withDefaults(*begin, c.cfg.Defaults),
			SpecHash: specHash(*begin), Branches: []protocol.Branch{b},
		}
		// Creates it with the branch, or finds it (then the Register below
		// adds the branch, or is a no-op when it is already there).
		if _, err := c.create(ctx, t, false); err != nil {
			return protocol.Txn{}, err
		}
	}
	return c.do(ctx, gid, protocol.ModeTCC, protocol.Register{Now: now(), Branch: b, MaxBranches: maxBranches})
}

// CommitTCC records the initiator's "every try succeeded".
func (c *Coordinator) CommitTCC(ctx context.Context, gid string) (protocol.Txn, error) {
	return c.do(ctx, gid, protocol.ModeTCC, protocol.Commit{Now: now()})
}

// RollbackTCC records the initiator's "a try failed".
func (c *Coordinator) RollbackTCC(ctx context.Context, gid, reason string) (protocol.Txn, error) {
	return c.do(ctx, gid, protocol.ModeTCC, protocol.Rollback{Now: now(), Reason: reason})
}

// Retry gives a transaction a fresh retry budget and retries now.
func (c *Coordinator) Retry(ctx context.Context, gid string) (protocol.Txn, error) {
	return c.do(ctx, gid, "", protocol.Retry{Now: now()})
}

// Abort rolls back an undecided transaction.
func (c *Coordinator) Abort(ctx context.Context, gid, reason string) (protocol.Txn, error) {
	return c.do(ctx, gid, "", protocol.Abort{Now: now(), Reason: reason})
}

// Get returns the current state of a transaction.
func (c *Coordinator) Get(ctx context.Context, gid string) (protocol.Txn, error) {
	if c.shared != nil {
		if e := c.lookup(gid); e != nil {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.durable, nil
		}
		return c.readStored(ctx, gid)
	}
	e, err := c.entryFor(ctx, gid)
	if err != nil {
		return protocol.Txn{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.durable, nil
}

// Wait blocks until the transaction is final or stuck, or ctx ends; it then
// returns the latest durable-or-newer state (with ctx.Err() if ctx ended).
func (c *Coordinator) Wait(ctx context.Context, gid string) (protocol.Txn, error) {
	if c.shared != nil {
		return c.waitStored(ctx, gid)
	}
	e, err := c.entryFor(ctx, gid)
	if err != nil {
		return protocol.Txn{}, err
	}
	return c.waitEntry(ctx, gid, e)
}

func (c *Coordinator) waitEntry(ctx context.Context, gid string, e *entry) (protocol.Txn, error) {
	// On a shared store another instance may have taken the transaction
	// over without this one knowing yet (it finds out at its next write):
	// now and then, look at the store.
	var recheck <-chan time.Time
	if c.shared != nil {
		tk := time.NewTicker(staleCheck)
		defer tk.Stop()
		recheck = tk.C
	}
	for {
		e.mu.Lock()
		t, ch, broken := e.durable, e.changed, e.broken
		e.mu.Unlock()
		if broken {
			if c.shared != nil {
				return c.waitStored(ctx, gid) // moved, or being reloaded
			}
			return t, fmt.Errorf("%w: %s is being reloaded", ErrUnavailable, gid)
		}
		if t.Status.Final() || t.Status == protocol.StatusStuck {
			return t, nil
		}
		select {
		case <-ch:
		case <-recheck:
			if rec, err := c.store.Get(ctx, gid); err == nil {
				e.mu.Lock()
				stale := rec.Owner != c.shared.Instance || rec.Version > e.ver
				e.mu.Unlock()
				if stale {
					c.disown(e)
				}
			}
		case <-ctx.Done():
			return t, ctx.Err()
		case <-c.ctx.Done():
			return t, ErrClosed
		}
	}
}

// staleCheck is how often a waiter on a shared store checks that this
// instance still owns the transaction it waits for.
const staleCheck = 500 * time.Millisecond

// List returns stored transactions, newest first.
func (c *Coordinator) List(ctx context.Context, opts store.ListOptions) ([]protocol.Txn, error) {
	recs, err := c.store.List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out := make([]protocol.Txn, 0, len(recs))
	for _, r := range recs {
		t, err := decode(r.Data)
		if err != nil {
			c.log.Error("unreadable record in list", "gid", r.GID, "err", err)
			continue
		}
		out = append(out, t)
	}
	return out, nil
}
