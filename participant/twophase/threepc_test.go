package twophase

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/participant"
)

// clock is a settable clock for the Store.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

const (
	voteTimeout     = 10 * time.Second
	decisionTimeout = 20 * time.Second
)

// threePC is a 3PC participant over f's table and business functions,
// with its own clock; the stock's reservation is the payload "3".
func (f *fixture) threePC(t *testing.T, clk *clock, canCommit func(context.Context, participant.Branch, []byte) error) *ThreePC {
	t.Helper()
	s, err := New(f.db, f.d, WithTable(f.s.table), WithClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.ThreePC(Resource{
		CanCommit: canCommit,
		Check: func(ctx context.Context, tx *sql.Tx, b participant.Branch, payload []byte) error {
			return f.reserve(3)(ctx, tx)
		},
		Apply: func(ctx context.Context, tx *sql.Tx, b participant.Branch, intent []byte) error {
			return f.apply(ctx, tx, intent)
		},
		Undo: func(ctx context.Context, tx *sql.Tx, b participant.Branch, intent []byte) error {
			return f.undo(ctx, tx, intent)
		},
	}, ThreePCConfig{VoteTimeout: voteTimeout, DecisionTimeout: decisionTimeout})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var branch3 = participant.Branch{GID: "g3", BranchID: "inventory", Mode: "3pc"}

// send delivers op to branch3 and checks the answer: "" for success,
// "rejected" for a no or a refusal.
func send(t *testing.T, p *ThreePC, op participant.Op, want string) {
	t.Helper()
	b := branch3
	b.Op = op
	err := p.HandlerFunc()(t.Context(), b, []byte("3"))
	got := ""
	switch {
	case errors.Is(err, participant.ErrRejected):
		got = "rejected"
	case err != nil:
		t.Fatalf("%s: %v", op, err)
	}
	if got != want {
		t.Fatalf("%s answered %q (%v), want %q", op, got, err, want)
	}
}

func sweep(t *testing.T, p *ThreePC, want Sweep) {
	t.Helper()
	got, err := p.SweepOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("sweep %+v, want %+v", got, want)
	}
}

func TestThreePCSQLite(t *testing.T)   { runThreePC(t, openSQLite) }
func TestThreePCPostgres(t *testing.T) { runThreePC(t, openPostgres) }
func TestThreePCMariaDB(t *testing.T)  { runThreePC(t, openMariaDB) }

func runThreePC(t *testing.T, open opener) {
	t.Run("Commit", func(t *testing.T) {
		f := newFixture(t, open)
		p := f.threePC(t, &clock{}, nil)
		send(t, p, participant.OpCanCommit, "")
		f.wantRuns(0, 0, 0) // no work at can-commit
		f.wantState(branch3, StateNone)
		send(t, p, participant.OpPreCommit, "")
		send(t, p, participant.OpPreCommit, "") // a repeat
		f.wantState(branch3, StatePreCommitted)
		f.wantStock(7, 3)
		send(t, p, participant.OpDoCommit, "")
		send(t, p, participant.OpDoCommit, "")
		f.wantState(branch3, StateCommitted)
		f.wantStock(7, 0)
		f.wantRuns(1, 1, 0)
		send(t, p, participant.OpAbort, "rejected") // never undone
		if pend, _ := f.s.Pending(t.Context()); len(pend) != 0 {
			t.Errorf("Pending lists 3pc branches: %+v", pend)
		}
	})

	t.Run("NoAtCanCommit", func(t *testing.T) {
		f := newFixture(t, open)
		p := f.threePC(t, &clock{}, func(context.Context, participant.Branch, []byte) error {
			return participant.Reject("closed for inventory")
		})
		send(t, p, participant.OpCanCommit, "rejected")
		send(t, p, participant.OpPreCommit, "rejected")
		send(t, p, participant.OpAbort, "")
		f.wantState(branch3, StateAborted)
		f.wantStock(10, 0)
		f.wantRuns(0, 0, 0)
	})

	t.Run("AbortAfterPreCommitUndoes", func(t *testing.T) {
		f := newFixture(t, open)
		p := f.threePC(t, &clock{}, nil)
		send(t, p, participant.OpCanCommit, "")
		send(t, p, participant.OpPreCommit, "")
		send(t, p, participant.OpAbort, "")
		send(t, p, participant.OpAbort, "")
		f.wantState(branch3, StateAborted)
		f.wantStock(10, 0)
		f.wantRuns(1, 0, 1)
		send(t, p, participant.OpDoCommit, "rejected")
	})

	t.Run("PreCommitWithoutVoteIsRefused", func(t *testing.T) {
		f := newFixture(t, open)
		p := f.threePC(t, &clock{}, nil)
		send(t, p, participant.OpPreCommit, "rejected")
		send(t, p, participant.OpCanCommit, "rejected") // stays refused
		f.wantState(branch3, StateAborted)
		f.wantRuns(0, 0, 0)
	})

	t.Run("PreCommittedCommitsOnItsTimeout", func(t *testing.T) {
		f := newFixture(t, open)
		clk := &clock{}
		p := f.threePC(t, clk, nil)
		send(t, p, participant.OpCanCommit, "")
		send(t, p, participant.OpPreCommit, "")
		clk.advance(decisionTimeout - time.Second)
		sweep(t, p, Sweep{})
		f.wantState(branch3, StatePreCommitted)
		clk.advance(time.Second)
		sweep(t, p, Sweep{Committed: 1})
		f.wantState(branch3, StateCommitted)
		f.wantStock(7, 0)
		sweep(t, p, Sweep{})
		// The coordinator comes back and finishes: it agrees.
		send(t, p, participant.OpPreCommit, "")
		send(t, p, participant.OpDoCommit, "")
		f.wantRuns(1, 1, 0)
	})

	t.Run("VotedAbortsOnItsTimeout", func(t *testing.T) {
		f := newFixture(t, open)
		clk := &clock{}
		p := f.threePC(t, clk, nil)
		send(t, p, participant.OpCanCommit, "")
		clk.advance(voteTimeout)
		sweep(t, p, Sweep{Aborted: 1})
		f.wantState(branch3, StateAborted)
		send(t, p, participant.OpPreCommit, "rejected") // the coordinator cannot commit now
		f.wantRuns(0, 0, 0)
		f.wantStock(10, 0)
	})

	t.Run("RestartGivesAFreshTimeout", func(t *testing.T) {
		f := newFixture(t, open)
		clk := &clock{}
		p := f.threePC(t, clk, nil)
		send(t, p, participant.OpCanCommit, "")
		send(t, p, participant.OpPreCommit, "")
		clk.advance(decisionTimeout / 2)
		q := f.threePC(t, clk, nil) // the process restarted
		sweep(t, q, Sweep{})
		clk.advance(decisionTimeout / 2)
		sweep(t, q, Sweep{}) // counted from the restart
		clk.advance(decisionTimeout / 2)
		sweep(t, q, Sweep{Committed: 1})
		f.wantState(branch3, StateCommitted)
	})

	t.Run("VoteIsForgottenInARestart", func(t *testing.T) {
		f := newFixture(t, open)
		clk := &clock{}
		send(t, f.threePC(t, clk, nil), participant.OpCanCommit, "")
		q := f.threePC(t, clk, nil)
		send(t, q, participant.OpPreCommit, "rejected")
		f.wantState(branch3, StateAborted)
	})

	t.Run("OtherOperationsAreBadRequests", func(t *testing.T) {
		f := newFixture(t, open)
		b := branch3
		b.Op = participant.OpPrepare
		if err := f.threePC(t, &clock{}, nil).HandlerFunc()(t.Context(), b, nil); !errors.Is(err, participant.ErrInvalidBranch) {
			t.Fatalf("prepare to a 3pc handler: %v, want ErrInvalidBranch", err)
		}
	})
}
