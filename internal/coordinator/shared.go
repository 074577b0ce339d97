package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store"
)

// Several coordinators on one store
//
// Every write of an instance carries its name as the record's owner and a
// version one above the record's last; the store refuses a write whose
// expected version is not the stored one (see store.Record.Version). So at
// any moment at most one instance can change a transaction: the one that
// wrote or claimed its current version. A decision, being such a write,
// can be made only once.
//
// An instance takes a transaction over in three ways:
//   - it created it;
//   - Claim: the owner's heartbeat lapsed by the store's clock (it died or
//     lost the store), and this instance's claim loop took the record;
//   - adopt: a request for the transaction (a TCC register or commit, an
//     operator retry) reached this instance; it writes the record as its
//     own (a fenced write) and resumes it like a recovery would.
//
// The instance that lost a transaction finds out at its next write, which
// conflicts: it drops the transaction from memory (disown) and leaves it to
// the new owner. Its calls already out are harmless: participants see each
// operation at least once anyway and the barrier makes repeats no-ops, and
// no outcome can be written but the new owner's.

// startShared announces this instance, claims the transactions of dead
// instances (the previous run of this process included), and keeps doing
// both in the background.
func (c *Coordinator) startShared(ctx context.Context) error {
	if c.leaser == nil {
		return fmt.Errorf("coordinator: shared mode needs a store that supports leases (%T does not)", c.store)
	}
	sc := c.shared
	if err := c.leaser.Heartbeat(ctx, sc.Instance, sc.LeaseTTL); err != nil {
		c.heartbeat(err)
		return fmt.Errorf("announce instance %s: %w", sc.Instance, err)
	}
	c.heartbeat(nil)
	c.log.Info("joined shared store", "instance", sc.Instance, "lease", sc.LeaseTTL)
	// A previous run under this instance name (a restart with a fixed
	// -instance) left its unfinished transactions owned by this name. Its
	// lease never lapses (this run renews it), so no instance would claim
	// them: resume them here, as the embedded store's recovery does.
	var mine []store.Record
	if err := c.store.Unfinished(ctx, func(r store.Record) error {
		if r.Owner == sc.Instance {
			mine = append(mine, r)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("find instance %s's unfinished transactions: %w", sc.Instance, err)
	}
	if len(mine) > 0 {
		c.log.Info("resuming this instance's unfinished transactions from its previous run", "instance", sc.Instance, "count", len(mine))
		c.loops.Add(1)
		go func() {
			defer c.loops.Done()
			c.resumeRecords(mine, "restart")
		}()
	}
	c.loops.Add(2)
	go c.heartbeatLoop()
	go c.claimLoop()
	return nil
}

func (c *Coordinator) heartbeatLoop() {
	defer c.loops.Done()
	sc := c.shared
	t := time.NewTicker(sc.LeaseTTL / 3)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, sc.LeaseTTL/3)
		err := c.leaser.Heartbeat(ctx, sc.Instance, sc.LeaseTTL)
		cancel()
		if c.ctx.Err() == nil {
			c.heartbeat(err)
		}
		if err == nil {
			lastOK = time.Now()
			continue
		}
		if c.ctx.Err() != nil {
			return
		}
		level := "heartbeat failed"
		if time.Since(lastOK) > sc.LeaseTTL {
			level = "heartbeat failed for longer than the lease: other instances may take this one's transactions over"
		}
		c.log.Warn(level, "instance", sc.Instance, "err", err)
	}
}

// heartbeat reports a lease renewal to the listener.
func (c *Coordinator) heartbeat(err error) {
	if c.cfg.Listener.Heartbeat != nil {
		c.cfg.Listener.Heartbeat(c.shared.LeaseTTL, err)
	}
}

func (c *Coordinator) claimLoop() {
	defer c.loops.Done()
	sc := c.shared
	for {
		for {
			n := c.claimOnce()
			if n < sc.ClaimBatch || c.ctx.Err() != nil {
				break
			}
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(sc.ClaimInterval):
		}
	}
}

// claimOnce claims one batch of orphaned transactions and resumes them. It
// returns how many it claimed.
func (c *Coordinator) claimOnce() int {
	sc := c.shared
	ctx, cancel := context.WithTimeout(c.ctx, sc.LeaseTTL)
	recs, err := c.leaser.Claim(ctx, sc.Instance, sc.ClaimBatch)
	cancel()
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.Warn("claim failed", "err", err)
		}
		return 0
	}
	if len(recs) > 0 {
		c.log.Info("claimed transactions of a lapsed instance", "count", len(recs))
	}
	c.resumeRecords(recs, "takeover")
	return len(recs)
}

// resumeRecords makes recs (owned by this instance, at their stored
// versions) live and steps each with Recover, RecoveryWorkers at a time;
// it returns when every one has been stepped.
func (c *Coordinator) resumeRecords(recs []store.Record, why string) {
	sem := make(chan struct{}, c.cfg.RecoveryWorkers)
	for _, r := range recs {
		t, err := decode(r.Data)
		if err != nil {
			c.log.Error("skipping unreadable claimed record", "gid", r.GID, "err", err)
			continue
		}
		e := newEntry(t, machineFor(t.Mode))
		e.ver = r.Version
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			break
		}
		if old := c.live[t.GID]; old != nil {
			c.mu.Unlock()
			c.disown(old) // a stale copy from before we lost it
			c.mu.Lock()
		}
		c.live[t.GID] = e
		c.mu.Unlock()
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			c.resumed(e, why)
			c.apply(e, protocol.Recover{Now: now()})
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
}

// adopt makes this instance the owner of gid's unfinished transaction and
// resumes it; a finished one is returned as a detached entry.
func (c *Coordinator) adopt(ctx context.Context, gid string) (*entry, error) {
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
	if t.Status.Final() {
		return e, nil
	}
	if rec.Version == 0 {
		return nil, fmt.Errorf("%w: %s was written by a coordinator without a shared store; an instance claims it shortly", ErrUnavailable, gid)
	}
	c.mu.Lock()
	if cur := c.live[gid]; cur != nil {
		c.mu.Unlock()
		return cur, nil
	}
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.live[gid] = e
	e.mu.Lock() // nobody else has e yet
	c.mu.Unlock()

	own := rec
	own.Owner, own.Version, own.Fresh = c.shared.Instance, rec.Version+1, false
	c.stopping.RLock()
	if c.stopped {
		c.stopping.RUnlock()
		e.mu.Unlock()
		return nil, ErrClosed
	}
	e.seq++
	e.ver = own.Version
	done := c.commit.enqueue(own)
	c.stopping.RUnlock()
	e.mu.Unlock()
	if err := <-done; err != nil {
		if errors.Is(err, store.ErrConflict) {
			c.disown(e)
			return nil, fmt.Errorf("%w: %s changed while this instance took it over", ErrMoved, gid)
		}
		c.writeFailed(e, err)
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if rec.Owner != c.shared.Instance {
		c.log.Info("took a transaction over", "gid", gid, "from", rec.Owner)
	}
	c.resumed(e, "takeover")
	if _, err := c.apply(e, protocol.Recover{Now: now()}); err != nil && !errors.Is(err, protocol.ErrInvalidTransition) {
		return nil, err
	}
	return e, nil
}

// disown drops a transaction another instance now drives. Waiters are
// woken; they find it gone and read the store.
func (c *Coordinator) disown(e *entry) {
	e.mu.Lock()
	e.broken = true
	gid := e.txn.GID
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	c.mu.Lock()
	if c.live[gid] == e {
		delete(c.live, gid)
	}
	c.mu.Unlock()
	c.timers.disarm(gid)
	c.log.Info("transaction moved to another instance", "gid", gid)
}

// readStored returns gid's durable state from the store.
func (c *Coordinator) readStored(ctx context.Context, gid string) (protocol.Txn, error) {
	rec, err := c.store.Get(ctx, gid)
	if errors.Is(err, store.ErrNotFound) {
		return protocol.Txn{}, fmt.Errorf("%w: %s", ErrNotFound, gid)
	}
	if err != nil {
		return protocol.Txn{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return decode(rec.Data)
}

// waitStored polls the store until gid is final or stuck (a transaction
// another instance drives).
func (c *Coordinator) waitStored(ctx context.Context, gid string) (protocol.Txn, error) {
	tick := time.NewTicker(c.shared.PollInterval)
	defer tick.Stop()
	for {
		if e := c.lookup(gid); e != nil {
			return c.waitEntry(ctx, gid, e)
		}
		t, err := c.readStored(ctx, gid)
		if err != nil && !errors.Is(err, ErrUnavailable) {
			return t, err
		}
		if err == nil && (t.Status.Final() || t.Status == protocol.StatusStuck) {
			return t, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return t, ctx.Err()
		case <-c.ctx.Done():
			return t, ErrClosed
		}
	}
}

// retentionLoop deletes old finished transactions in small batches.
func (c *Coordinator) retentionLoop(d store.Deleter) {
	defer c.loops.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(c.cfg.RetentionInterval):
		}
		total := 0
		for c.ctx.Err() == nil {
			cutoff := time.Now().Add(-c.cfg.Retention).UnixNano()
			n, err := d.DeleteFinished(c.ctx, cutoff, c.cfg.RetentionBatch)
			total += n
			if err != nil {
				if c.ctx.Err() == nil {
					c.log.Warn("retention sweep failed", "err", err)
				}
				break
			}
			if n < c.cfg.RetentionBatch {
				break
			}
			// Leave room for live traffic between batches.
			select {
			case <-c.ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		if total > 0 {
			c.log.Info("retention: deleted finished transactions", "count", total, "older_than", c.cfg.Retention)
		}
	}
}
