package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store"
)

// Stats is a snapshot of the coordinator's live work, for gauges.
type Stats struct {
	// Live counts the unfinished transactions this process drives.
	Live int
	// Stuck counts those waiting for an operator.
	Stuck int
	// InDoubt counts 2PC branches that voted yes and have not yet
	// acknowledged the decision (their databases hold prepared
	// transactions); OldestInDoubt is how long the oldest has waited
	// since its vote.
	InDoubt       int
	OldestInDoubt time.Duration
	// CommitQueue is how many writes wait for the next group commit.
	CommitQueue int
}

// Stats returns a snapshot of the live transactions. It costs one short
// lock per live transaction: fine for a scrape, not for a hot path.
func (c *Coordinator) Stats() Stats {
	c.mu.Lock()
	entries := make([]*entry, 0, len(c.live))
	for _, e := range c.live {
		entries = append(entries, e)
	}
	c.mu.Unlock()
	st := Stats{CommitQueue: len(c.commit.in)}
	nowNS := now()
	for _, e := range entries {
		e.mu.Lock()
		t := &e.durable
		switch {
		case t.Status == protocol.StatusNew || t.Status.Final():
		case t.Status == protocol.StatusStuck:
			st.Live++
			st.Stuck++
		default:
			st.Live++
		}
		if t.Mode == protocol.ModeTwoPC && !t.Status.Final() {
			for i := range t.Branches {
				if since, ok := inDoubtSince(&t.Branches[i]); ok {
					st.InDoubt++
					if d := time.Duration(nowNS - since); d > st.OldestInDoubt {
						st.OldestInDoubt = d
					}
				}
			}
		}
		e.mu.Unlock()
	}
	return st
}

// inDoubtSince reports whether a 2PC branch voted yes (and is not
// read-only) without acknowledging phase 2 yet, and when its vote came.
func inDoubtSince(b *protocol.Branch) (int64, bool) {
	if b.Fwd.Status != protocol.OpDone || b.Bwd.Status == protocol.OpDone || b.Bwd.Status == protocol.OpSkipped {
		return 0, false
	}
	var at int64
	for _, a := range b.History {
		if a.Op == protocol.OpPrepare && a.Outcome == protocol.OutcomeSuccess {
			at = a.Started + a.Duration
		}
	}
	return at, at != 0
}

// MergeListeners returns a Listener that calls every callback of ls in
// order. CallStart contexts are chained: each sees the previous one's.
func MergeListeners(ls ...Listener) Listener {
	var out Listener
	for _, l := range ls {
		out.GroupCommit = chain3(out.GroupCommit, l.GroupCommit)
		out.BranchCall = chain4(out.BranchCall, l.BranchCall)
		out.Finished = chain2(out.Finished, l.Finished)
		out.Alerted = chain1(out.Alerted, l.Alerted)
		out.Started = chain3(out.Started, l.Started)
		out.Resumed = chain3(out.Resumed, l.Resumed)
		out.Ended = chain3(out.Ended, l.Ended)
		out.Heartbeat = chain2(out.Heartbeat, l.Heartbeat)
		out.CallStart = chainCallStart(out.CallStart, l.CallStart)
	}
	return out
}

func chain1[A any](f, g func(A)) func(A) {
	if f == nil {
		return g
	}
	if g == nil {
		return f
	}
	return func(a A) { f(a); g(a) }
}

func chain2[A, B any](f, g func(A, B)) func(A, B) {
	if f == nil {
		return g
	}
	if g == nil {
		return f
	}
	return func(a A, b B) { f(a, b); g(a, b) }
}

func chain3[A, B, C any](f, g func(A, B, C)) func(A, B, C) {
	if f == nil {
		return g
	}
	if g == nil {
		return f
	}
	return func(a A, b B, c C) { f(a, b, c); g(a, b, c) }
}

func chain4[A, B, C, D any](f, g func(A, B, C, D)) func(A, B, C, D) {
	if f == nil {
		return g
	}
	if g == nil {
		return f
	}
	return func(a A, b B, c C, d D) { f(a, b, c, d); g(a, b, c, d) }
}

type callStartFunc = func(context.Context, string, protocol.Mode, protocol.Call) (context.Context, func(protocol.Outcome, string))

func chainCallStart(f, g callStartFunc) callStartFunc {
	if f == nil {
		return g
	}
	if g == nil {
		return f
	}
	return func(ctx context.Context, gid string, mode protocol.Mode, call protocol.Call) (context.Context, func(protocol.Outcome, string)) {
		ctx1, d1 := f(ctx, gid, mode, call)
		if ctx1 == nil {
			ctx1 = ctx
		}
		ctx2, d2 := g(ctx1, gid, mode, call)
		if ctx2 == nil {
			ctx2 = ctx1
		}
		switch {
		case d1 == nil:
			return ctx2, d2
		case d2 == nil:
			return ctx2, d1
		}
		return ctx2, func(o protocol.Outcome, msg string) { d2(o, msg); d1(o, msg) }
	}
}

// NewDecoratedCaller returns a SchemeCaller whose HTTP and gRPC requests
// pass through decorate, which may add headers carrying the call's
// context (a W3C traceparent, for example).
func NewDecoratedCaller(decorate func(context.Context, http.Header)) *SchemeCaller {
	h := NewHTTPCaller()
	g := NewGRPCCaller()
	if decorate != nil {
		h.Decorate = func(r *http.Request) { decorate(r.Context(), r.Header) }
		g.Decorate = decorate
	}
	return &SchemeCaller{HTTP: h, GRPC: g, Broker: NewBrokerCaller()}
}

// inDoubtLoop raises one "in-doubt" alert for every 2PC transaction with a
// branch that voted yes and has waited longer than cfg.InDoubtAlert for
// its phase 2 (the participant holds its locks all that time).
func (c *Coordinator) inDoubtLoop() {
	defer c.loops.Done()
	every := min(c.cfg.InDoubtAlert/4, 10*time.Second)
	every = max(every, 10*time.Millisecond)
	alerted := map[string]bool{}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(every):
		}
		c.mu.Lock()
		entries := make([]*entry, 0, len(c.live))
		for _, e := range c.live {
			entries = append(entries, e)
		}
		c.mu.Unlock()
		nowNS := now()
		seen := make(map[string]bool, len(alerted))
		for _, e := range entries {
			e.mu.Lock()
			t := e.durable.Clone()
			e.mu.Unlock()
			if t.Mode != protocol.ModeTwoPC || t.Status.Final() || t.Status == protocol.StatusNew {
				continue
			}
			var oldest int64
			var branch string
			for i := range t.Branches {
				if since, ok := inDoubtSince(&t.Branches[i]); ok && (oldest == 0 || since < oldest) {
					oldest, branch = since, t.Branches[i].ID
				}
			}
			if oldest == 0 {
				continue
			}
			seen[t.GID] = alerted[t.GID]
			if alerted[t.GID] || time.Duration(nowNS-oldest) < c.cfg.InDoubtAlert {
				continue
			}
			seen[t.GID] = true
			c.raise(t, protocol.Alert{Kind: "in-doubt", Message: fmt.Sprintf(
				"2pc %s: branch %s voted yes %v ago and is still waiting for phase 2 (status %s); it holds its locks until then",
				t.GID, branch, time.Duration(nowNS-oldest).Round(time.Second), t.Status)})
		}
		alerted = seen
	}
}

// healthGID is the gid Health reads: no transaction has it (the API
// refuses gids with spaces), so a healthy store answers "not found".
const healthGID = "concord health probe"

// Health reports whether the store answers: it reads one record (that
// does not exist) with a short deadline. A result is reused for a second,
// so that frequent probes from load balancers cost the store little.
func (c *Coordinator) Health(ctx context.Context) error {
	c.healthMu.Lock()
	defer c.healthMu.Unlock()
	if !c.healthAt.IsZero() && time.Since(c.healthAt) < time.Second {
		return c.healthErr
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := c.store.Get(ctx, healthGID)
	if errors.Is(err, store.ErrNotFound) {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("%w: store: %v", ErrUnavailable, err)
	}
	c.healthAt, c.healthErr = time.Now(), err
	return err
}
