package xa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/concordtm/concord/participant"
)

// Decisions a Resolver's Decide returns: the answers of the coordinator's
// GetDecision (client.Client.Decision).
const (
	DecisionCommit  = "commit"
	DecisionAbort   = "abort"
	DecisionPending = "pending"
)

// Resolver is the participant's orphan scan: it ends the prepared branches
// whose decision never arrived (the coordinator crashed, the phase-two call
// was lost, the participant restarted) by asking the coordinator, never by
// guessing. A prepared branch must not be rolled back because it is old:
// the coordinator may have decided commit and told the other participants.
//
// For each prepared branch (Recover) older than MinAge, ResolveOnce calls
// Decide with the branch's gid and acts on the answer: "commit" → Commit,
// "abort" → Abort, "pending" (still voting) → nothing, ask again later.
// The coordinator answers "abort" for a gid it does not know (presumed
// abort), so Decide must ask the coordinator that ran the transaction.
//
// # Which branches
//
// Recover lists every prepared branch of this package in the database; on
// MySQL/MariaDB XA RECOVER is server-wide, so it includes the branches of
// other databases and other services on the same server. A Resolver asking
// a coordinator that never saw a gid gets "abort" for it and would roll
// back a branch another coordinator may have decided to commit. Set Match
// to scope the scan to the branches this service owns (by gid or branch id
// convention) whenever the database or server is shared.
//
// # Age
//
// MinAge leaves a freshly prepared branch to its coordinator, whose
// phase-two call is normally moments away. A branch's age is the longer of
// the time since its PreparedAt (PostgreSQL; compared with this process's
// clock, so clock skew between the hosts shifts it) and the time since this
// Resolver first listed it. MySQL reports no preparation time, so there
// only the first-seen time counts: a branch becomes old MinAge after the
// first scan that listed it, and a restarted process waits MinAge again.
// With MinAge zero every listed branch is old at once.
//
// A Resolver is safe for concurrent use, and several Resolvers (in several
// processes) may scan the same database: Commit and Abort are idempotent
// and handle a branch another session is ending.
type Resolver struct {
	DB      *sql.DB
	Dialect Dialect
	// Decide asks the coordinator for gid's decision, usually
	// client.Client.Decision: DecisionCommit, DecisionAbort or
	// DecisionPending. An error leaves the branch prepared for the next
	// scan.
	Decide func(ctx context.Context, gid string) (string, error)
	// MinAge is how long a branch stays prepared before the scan asks
	// about it (see Age).
	MinAge time.Duration
	// Match, if not nil, selects the branches to resolve; the others are
	// not counted and not touched. A branch whose gid is unknown (hashed
	// XID without its NameTable row) is never passed to Decide.
	Match func(Prepared) bool
	// Logger receives one line per branch ended and per error; nil
	// discards them.
	Logger *slog.Logger

	mu        sync.Mutex
	firstSeen map[string]time.Time // XID → first scan that listed it
}

// ThreePCTimeouts returns a Resolver that is the decision timeout of 3PC
// branches served by Handler: every prepared branch that match selects and
// that is older than after is committed, without asking anyone, the way a
// pre-committed 3PC participant that hears nothing commits on its own (and
// may thereby diverge: see docs/protocols.md). Run it with Resolver.Run.
//
// match is required and must select only 3PC branches (by gid or branch
// id convention): XA RECOVER lists 2PC branches too, and committing a 2PC
// branch on a timeout breaks atomicity.
func ThreePCTimeouts(db *sql.DB, d Dialect, after time.Duration, match func(Prepared) bool) (*Resolver, error) {
	if match == nil {
		return nil, errors.New("xa: ThreePCTimeouts: a Match that selects the 3pc branches is required")
	}
	return &Resolver{
		DB: db, Dialect: d, MinAge: after, Match: match,
		Decide: func(context.Context, string) (string, error) { return DecisionCommit, nil },
	}, nil
}

// Report counts what one scan did with the branches it considered.
type Report struct {
	Committed int // Decide said commit and Commit succeeded
	Aborted   int // Decide said abort and Abort succeeded
	Pending   int // Decide said pending: left prepared
	Young     int // younger than MinAge: not asked yet
	Errors    int // Decide, Commit or Abort failed, or the answer was unusable: left for the next scan
}

// ErrBadDecision is wrapped by the errors of a scan whose Decide answered
// something else than commit, abort or pending. The branch is left
// prepared.
var ErrBadDecision = errors.New("xa: unknown decision")

// ResolveOnce scans the prepared branches once and ends those whose
// decision is known. It returns an error only when the list itself could
// not be read; failures on single branches are counted in Report.Errors,
// logged, and joined into the returned error after the scan went through
// every branch, so that one bad branch does not block the others.
func (r *Resolver) ResolveOnce(ctx context.Context) (Report, error) {
	var rep Report
	if err := checkArgs(r.DB, r.Dialect); err != nil {
		return rep, err
	}
	if r.Decide == nil {
		return rep, errors.New("xa: Resolver without Decide")
	}
	list, err := Recover(ctx, r.DB, r.Dialect)
	if err != nil {
		return rep, err
	}
	now := time.Now()
	ages := r.ages(list, now)
	log := r.logger()
	var errs []error
	fail := func(p Prepared, err error) {
		rep.Errors++
		errs = append(errs, err)
		log.Error("xa resolver: branch left prepared", "xid", p.XID, "gid", p.GID, "branch", p.BranchID, "err", err)
	}
	for i, p := range list {
		if r.Match != nil && !r.Match(p) {
			continue
		}
		if ages[i] < r.MinAge {
			rep.Young++
			continue
		}
		if p.GID == "" {
			fail(p, fmt.Errorf("xa: prepared %s has no recorded gid: end it by hand", p.XID))
			continue
		}
		if ctx.Err() != nil {
			return rep, errors.Join(append(errs, ctx.Err())...)
		}
		decision, err := r.Decide(ctx, p.GID)
		if err != nil {
			fail(p, fmt.Errorf("xa: decision for %s: %w", p.GID, err))
			continue
		}
		b := participant.Branch{GID: p.GID, BranchID: p.BranchID, Op: participant.OpCommit, Mode: "2pc"}
		switch decision {
		case DecisionCommit:
			if err := Commit(ctx, r.DB, r.Dialect, b); err != nil {
				fail(p, err)
				continue
			}
			rep.Committed++
			log.Info("xa resolver: committed", "gid", p.GID, "branch", p.BranchID)
		case DecisionAbort:
			b.Op = participant.OpAbort
			if err := Abort(ctx, r.DB, r.Dialect, b); err != nil {
				fail(p, err)
				continue
			}
			rep.Aborted++
			log.Info("xa resolver: aborted", "gid", p.GID, "branch", p.BranchID)
		case DecisionPending:
			rep.Pending++
		default:
			fail(p, fmt.Errorf("%w %q for %s", ErrBadDecision, decision, p.GID))
		}
	}
	return rep, errors.Join(errs...)
}

// Run scans every interval until ctx ends, and returns ctx's error. Scan
// errors are logged, never fatal: the next scan tries again.
func (r *Resolver) Run(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("xa: Resolver.Run: interval %v is not positive", every)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if rep, err := r.ResolveOnce(ctx); err != nil && ctx.Err() == nil {
			r.logger().Warn("xa resolver: scan", "err", err, "committed", rep.Committed,
				"aborted", rep.Aborted, "pending", rep.Pending, "errors", rep.Errors)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// ages returns the age of each listed branch at now, and records the
// first-seen time of the new ones. Branches no longer listed are forgotten.
func (r *Resolver) ages(list []Prepared, now time.Time) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]time.Time, len(list))
	ages := make([]time.Duration, len(list))
	for i, p := range list {
		first, ok := r.firstSeen[p.XID]
		if !ok {
			first = now
		}
		seen[p.XID] = first
		ages[i] = now.Sub(first)
		if !p.PreparedAt.IsZero() {
			ages[i] = max(ages[i], now.Sub(p.PreparedAt))
		}
	}
	r.firstSeen = seen
	return ages
}

func (r *Resolver) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}
