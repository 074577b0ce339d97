package twophase

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
)

// member is one 3PC participant of a two-branch transaction, served over
// HTTP so that its peer can ask it.
type member struct {
	f   *fixture
	p   *ThreePC
	clk *clock
	id  string
	url string
}

func newMember(t *testing.T, open opener, id string, termination bool) *member {
	t.Helper()
	m := &member{f: newFixture(t, open), clk: &clock{}, id: id}
	s, err := New(m.f.db, m.f.d, WithTable(m.f.s.table), WithClock(m.clk.now))
	if err != nil {
		t.Fatal(err)
	}
	m.p, err = s.ThreePC(Resource{
		Check: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, _ []byte) error {
			return m.f.reserve(3)(ctx, tx)
		},
		Apply: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			return m.f.apply(ctx, tx, intent)
		},
		Undo: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			return m.f.undo(ctx, tx, intent)
		},
	}, ThreePCConfig{VoteTimeout: voteTimeout, DecisionTimeout: decisionTimeout, Termination: termination, AskTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.p.Handler())
	t.Cleanup(srv.Close)
	m.url = srv.URL
	return m
}

// deliver sends the coordinator's op to m, naming peers as the
// coordinator does, and checks the answer ("" or "rejected").
func (m *member) deliver(t *testing.T, gid string, op participant.Op, want string, peers ...*member) {
	t.Helper()
	b := participant.Branch{GID: gid, BranchID: m.id, Op: op, Mode: "3pc"}
	for _, q := range peers {
		b.Peers = append(b.Peers, participant.Peer{Branch: q.id, URL: q.url})
	}
	err := m.p.HandlerFunc()(t.Context(), b, []byte("3"))
	got := ""
	switch {
	case errors.Is(err, participant.ErrRejected):
		got = "rejected"
	case err != nil:
		t.Fatalf("%s %s: %v", m.id, op, err)
	}
	if got != want {
		t.Fatalf("%s %s answered %q (%v), want %q", m.id, op, got, err, want)
	}
}

func (m *member) state(t *testing.T, gid string) State {
	t.Helper()
	st, err := m.f.s.State(t.Context(), gid, m.id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestTerminationSQLite(t *testing.T)   { runTermination(t, openSQLite) }
func TestTerminationPostgres(t *testing.T) { runTermination(t, openPostgres) }
func TestTerminationMariaDB(t *testing.T)  { runTermination(t, openMariaDB) }

func runTermination(t *testing.T, open opener) {
	// The seeds' story: both said yes, the coordinator pre-committed
	// alice and died before telling bob.
	story := func(t *testing.T, termination bool) (alice, bob *member) {
		alice, bob = newMember(t, open, "alice", termination), newMember(t, open, "bob", termination)
		alice.deliver(t, "g", participant.OpCanCommit, "", bob)
		bob.deliver(t, "g", participant.OpCanCommit, "", alice)
		alice.deliver(t, "g", participant.OpPreCommit, "", bob)
		return alice, bob
	}

	t.Run("WithoutTerminationDiverges", func(t *testing.T) {
		alice, bob := story(t, false)
		alice.clk.advance(decisionTimeout + time.Second)
		bob.clk.advance(decisionTimeout + time.Second)
		sweep(t, alice.p, Sweep{Committed: 1})
		sweep(t, bob.p, Sweep{Aborted: 1})
		if a, b := alice.state(t, "g"), bob.state(t, "g"); a != StateCommitted || b != StateAborted {
			t.Fatalf("alice %s, bob %s; want the documented divergence (committed, aborted)", a, b)
		}
	})

	t.Run("AliceAsksFirst", func(t *testing.T) {
		alice, bob := story(t, true)
		alice.clk.advance(decisionTimeout + time.Second)
		// Bob has only voted: asked, he aborts for good and says so;
		// alice aborts on that answer and undoes her work.
		sweep(t, alice.p, Sweep{Aborted: 1})
		if a, b := alice.state(t, "g"), bob.state(t, "g"); a != StateAborted || b != StateAborted {
			t.Fatalf("alice %s, bob %s; want both aborted", a, b)
		}
		alice.f.wantStock(10, 0)
		// Bob's late pre-commit (the coordinator back) is refused.
		bob.deliver(t, "g", participant.OpPreCommit, "rejected", alice)
		bob.clk.advance(voteTimeout + time.Second)
		sweep(t, bob.p, Sweep{})
	})

	t.Run("BobAsksFirst", func(t *testing.T) {
		alice, bob := story(t, true)
		bob.clk.advance(voteTimeout + time.Second)
		// Bob voted and is not pre-committed: he aborts; alice, asked,
		// answers precommitted (she did the work).
		sweep(t, bob.p, Sweep{Aborted: 1})
		if b := bob.state(t, "g"); b != StateAborted {
			t.Fatalf("bob %s, want aborted", b)
		}
		alice.clk.advance(decisionTimeout + time.Second)
		sweep(t, alice.p, Sweep{Aborted: 1}) // bob answers aborted
		if a := alice.state(t, "g"); a != StateAborted {
			t.Fatalf("alice %s, want aborted", a)
		}
		alice.f.wantStock(10, 0)
	})

	t.Run("AllPreCommittedCommit", func(t *testing.T) {
		alice, bob := story(t, true)
		bob.deliver(t, "g", participant.OpPreCommit, "", alice)
		alice.clk.advance(decisionTimeout + time.Second)
		sweep(t, alice.p, Sweep{Committed: 1})
		bob.clk.advance(decisionTimeout + time.Second)
		sweep(t, bob.p, Sweep{Committed: 1}) // alice answers committed
		alice.f.wantStock(7, 0)
		bob.f.wantStock(7, 0)
	})

	t.Run("UnreachablePeerTakenForCrashed", func(t *testing.T) {
		alice := newMember(t, open, "alice", true)
		gone := &member{id: "bob", url: "http://127.0.0.1:1/gone"}
		alice.deliver(t, "g", participant.OpCanCommit, "", gone)
		alice.deliver(t, "g", participant.OpPreCommit, "", gone)
		alice.clk.advance(decisionTimeout + time.Second)
		sweep(t, alice.p, Sweep{Committed: 1}) // what the pure machine does
	})

	t.Run("StateQuery", func(t *testing.T) {
		m := newMember(t, open, "alice", false)
		ask := func(gid string) participant.PeerState {
			t.Helper()
			st, err := participant.AskPeer(t.Context(), nil, gid, "3pc", participant.Peer{Branch: "alice", URL: m.url})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		// Unknown gid: aborted durably, so a later can-commit says no.
		if st := ask("q1"); st != participant.PeerAborted {
			t.Fatalf("unknown gid: %s", st)
		}
		m.deliver(t, "q1", participant.OpCanCommit, "rejected")
		// Voted: aborted too (the vote was in memory only).
		m.deliver(t, "q2", participant.OpCanCommit, "")
		if st := ask("q2"); st != participant.PeerAborted || m.state(t, "q2") != StateAborted {
			t.Fatalf("voted: %s, row %s", st, m.state(t, "q2"))
		}
		m.deliver(t, "q2", participant.OpPreCommit, "rejected")
		m.deliver(t, "q3", participant.OpCanCommit, "")
		m.deliver(t, "q3", participant.OpPreCommit, "")
		if st := ask("q3"); st != participant.PeerPreCommitted {
			t.Fatalf("precommitted: %s", st)
		}
		m.deliver(t, "q3", participant.OpDoCommit, "")
		if st := ask("q3"); st != participant.PeerCommitted {
			t.Fatalf("committed: %s", st)
		}
		// A state query without branch headers is a 400.
		resp, err := http.Post(m.url, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("no headers: HTTP %d", resp.StatusCode)
		}
	})
}

// CreateTable adds the peers column to a table an older release created.
func TestCreateTableAddsPeers(t *testing.T) {
	for name, open := range map[string]opener{"sqlite": openSQLite, "postgres": openPostgres, "mariadb": openMariaDB} {
		t.Run(name, func(t *testing.T) {
			db, d := open(t)
			table := testenv.UniqueName(t, "tp_old")
			s, err := New(db, d, WithTable(table))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE "+table) })
			old := regexp.MustCompile(`(?m)^\s*peers\s+\w+,\n`).ReplaceAllString(s.q.create, "")
			if old == s.q.create {
				t.Fatal("no peers column in the schema")
			}
			if _, err := db.ExecContext(t.Context(), old); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second time finds the column
				if err := s.CreateTable(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			b := participant.Branch{GID: "g", BranchID: "b", Op: participant.OpPrepare, Peers: []participant.Peer{{Branch: "c", URL: "http://c/x"}}}
			if err := s.Prepare(t.Context(), b, func(context.Context, *sql.Tx) error { return nil }, nil); err != nil {
				t.Fatal(err)
			}
			if peers, err := s.Peers(t.Context(), "g", "b"); err != nil || len(peers) != 1 || peers[0] != b.Peers[0] {
				t.Fatalf("peers %v, %v", peers, err)
			}
		})
	}
}
