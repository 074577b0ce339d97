package twophase

import (
	"context"
	"database/sql"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/concordtm/concord/participant"
)

// voter is one 2PC participant, served over HTTP so that its peers can ask
// it; readOnly makes its prepare vote read-only.
type voter struct {
	f        *fixture
	r        Resource
	id, url  string
	readOnly bool
}

func newVoter(t *testing.T, open opener, id string) *voter {
	t.Helper()
	v := &voter{f: newFixture(t, open), id: id}
	v.r = Resource{
		Check: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, _ []byte) error {
			if v.readOnly {
				return participant.ErrReadOnly
			}
			return v.f.reserve(3)(ctx, tx)
		},
		Apply: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			return v.f.apply(ctx, tx, intent)
		},
		Undo: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			return v.f.undo(ctx, tx, intent)
		},
	}
	srv := httptest.NewServer(v.f.s.Handler(v.r))
	t.Cleanup(srv.Close)
	v.url = srv.URL
	return v
}

func (v *voter) deliver(t *testing.T, op participant.Op, want string, peers ...*voter) {
	t.Helper()
	b := participant.Branch{GID: "g2", BranchID: v.id, Op: op, Mode: "2pc"}
	for _, q := range peers {
		b.Peers = append(b.Peers, participant.Peer{Branch: q.id, URL: q.url})
	}
	err := v.f.s.HandlerFunc(v.r)(t.Context(), b, []byte("3"))
	got := ""
	switch {
	case errors.Is(err, participant.ErrRejected):
		got = "rejected"
	case errors.Is(err, participant.ErrReadOnly):
		got = "read-only"
	case err != nil:
		t.Fatalf("%s %s: %v", v.id, op, err)
	}
	if got != want {
		t.Fatalf("%s %s answered %q (%v), want %q", v.id, op, got, err, want)
	}
}

func (v *voter) state(t *testing.T) State {
	t.Helper()
	st, err := v.f.s.State(t.Context(), "g2", v.id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// resolve runs one scan of v's Resolver with the coordinator unreachable
// (or answering decision) and checks what it did.
func (v *voter) resolve(t *testing.T, termination bool, decision string, want Resolution) {
	t.Helper()
	r := &Resolver{Store: v.f.s, Resource: v.r, Termination: termination, AskTimeout: 2 * time.Second,
		Decide: func(context.Context, string) (string, error) {
			if decision == "" {
				return "", errors.New("connection refused")
			}
			return decision, nil
		}}
	got, err := r.ResolveOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("%s: resolution %+v, want %+v", v.id, got, want)
	}
}

func TestCooperativeSQLite(t *testing.T)   { runCooperative(t, openSQLite) }
func TestCooperativePostgres(t *testing.T) { runCooperative(t, openPostgres) }
func TestCooperativeMariaDB(t *testing.T)  { runCooperative(t, openMariaDB) }

func runCooperative(t *testing.T, open opener) {
	// Both voted yes; the commit reached alice only, and the coordinator
	// is down.
	t.Run("LearnsCommitFromPeer", func(t *testing.T) {
		alice, bob := newVoter(t, open, "alice"), newVoter(t, open, "bob")
		alice.deliver(t, participant.OpPrepare, "", bob)
		bob.deliver(t, participant.OpPrepare, "", alice)
		alice.deliver(t, participant.OpCommit, "")
		bob.resolve(t, false, "", Resolution{Blocked: 1}) // without termination: blocked
		bob.resolve(t, true, "", Resolution{Committed: 1, ByPeers: 1})
		if bob.state(t) != StateCommitted {
			t.Fatalf("bob %s", bob.state(t))
		}
		bob.f.wantStock(7, 0)
	})

	t.Run("AllUncertainStayBlocked", func(t *testing.T) {
		alice, bob := newVoter(t, open, "alice"), newVoter(t, open, "bob")
		alice.deliver(t, participant.OpPrepare, "", bob)
		bob.deliver(t, participant.OpPrepare, "", alice)
		bob.resolve(t, true, "", Resolution{Blocked: 1})
		bob.resolve(t, true, "pending", Resolution{Blocked: 1})
		if alice.state(t) != StatePrepared || bob.state(t) != StatePrepared {
			t.Fatalf("alice %s, bob %s; want both prepared", alice.state(t), bob.state(t))
		}
		// The coordinator back: its answer ends it.
		bob.resolve(t, true, "commit", Resolution{Committed: 1})
	})

	t.Run("PeerNotVotedAborts", func(t *testing.T) {
		alice, bob := newVoter(t, open, "alice"), newVoter(t, open, "bob")
		bob.deliver(t, participant.OpPrepare, "", alice)
		bob.resolve(t, true, "", Resolution{Aborted: 1, ByPeers: 1})
		if alice.state(t) != StateAborted || bob.state(t) != StateAborted {
			t.Fatalf("alice %s, bob %s; want both aborted", alice.state(t), bob.state(t))
		}
		bob.f.wantStock(10, 0)
		alice.deliver(t, participant.OpPrepare, "rejected", bob) // aborted for good
	})

	t.Run("ReadOnlyPeerIsUncertain", func(t *testing.T) {
		alice, bob := newVoter(t, open, "alice"), newVoter(t, open, "bob")
		alice.readOnly = true
		alice.deliver(t, participant.OpPrepare, "read-only", bob)
		bob.deliver(t, participant.OpPrepare, "", alice)
		if alice.state(t) != StateReadOnly {
			t.Fatalf("alice %s, want readonly", alice.state(t))
		}
		bob.resolve(t, true, "", Resolution{Blocked: 1}) // a yes: nothing learnt
		alice.deliver(t, participant.OpAbort, "")        // ends it without an undo
		alice.f.wantRuns(0, 0, 0)
	})
}
