package xa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/concordtm/concord/participant"
)

// TestState asks about branches in every state, on both databases.
func TestState(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		ask := func(b participant.Branch, mode string) participant.PeerState {
			t.Helper()
			b.Mode = mode
			st, err := State(f.ctx, f.db, f.d, b)
			if err != nil {
				t.Fatalf("State(%s): %v", b.BranchID, err)
			}
			return st
		}

		// 3PC, never pre-committed: aborted, durably; a pre-commit
		// arriving later is refused.
		late := f.branch("late")
		if st := ask(late, "3pc"); st != participant.PeerAborted {
			t.Fatalf("unknown 3PC branch: %s, want aborted", st)
		}
		if err := Prepare(f.ctx, f.db, f.d, late, f.insert(1, 1, nil)); !errors.Is(err, participant.ErrRejected) {
			t.Fatalf("prepare after answering aborted: %v, want ErrRejected", err)
		}

		// 2PC, no trace: it may have voted read-only (a yes), so no
		// answer, and nothing recorded: its prepare still runs.
		ro := f.branch("ro")
		if err := Prepare(f.ctx, f.db, f.d, ro, func(context.Context, *sql.Conn) error { return participant.ErrReadOnly }); !errors.Is(err, participant.ErrReadOnly) {
			t.Fatalf("read-only vote: %v", err)
		}
		if st, err := State(f.ctx, f.db, f.d, participant.Branch{GID: ro.GID, BranchID: ro.BranchID, Mode: "2pc"}); err == nil {
			t.Fatalf("2PC branch that voted read-only answered %s; want no answer (it voted yes)", st)
		}
		unseen := f.branch("unseen")
		if st, err := State(f.ctx, f.db, f.d, participant.Branch{GID: unseen.GID, BranchID: unseen.BranchID, Mode: "2pc"}); err == nil {
			t.Fatalf("2PC branch with no trace answered %s; want no answer", st)
		}
		if err := Prepare(f.ctx, f.db, f.d, unseen, f.insert(4, 1, nil)); err != nil {
			t.Fatalf("prepare after a 2PC state query without answer: %v", err)
		}
		if err := Abort(f.ctx, f.db, f.d, unseen); err != nil {
			t.Fatal(err)
		}

		// Prepared: voted (2PC) or pre-committed (3PC), and still prepared
		// afterwards: an answer is not a decision.
		p2 := f.branch("p2")
		if err := Prepare(f.ctx, f.db, f.d, p2, f.insert(2, 1, nil)); err != nil {
			t.Fatal(err)
		}
		if st := ask(p2, "2pc"); st != participant.PeerVoted {
			t.Fatalf("prepared 2PC branch: %s, want voted", st)
		}
		if !f.prepared(p2) {
			t.Fatal("the state query ended the prepared branch")
		}
		p3 := f.branch("p3")
		if err := Prepare(f.ctx, f.db, f.d, p3, f.insert(3, 1, nil)); err != nil {
			t.Fatal(err)
		}
		if st := ask(p3, "3pc"); st != participant.PeerPreCommitted {
			t.Fatalf("prepared 3PC branch: %s, want precommitted", st)
		}

		// Committed, after a state query had answered voted.
		if err := Commit(f.ctx, f.db, f.d, p2); err != nil {
			t.Fatalf("commit after a state query: %v", err)
		}
		if st := ask(p2, "2pc"); st != participant.PeerCommitted {
			t.Fatalf("committed branch: %s, want committed", st)
		}

		// Rolled back.
		if err := Abort(f.ctx, f.db, f.d, p3); err != nil {
			t.Fatal(err)
		}
		if st := ask(p3, "3pc"); st != participant.PeerAborted {
			t.Fatalf("aborted branch: %s, want aborted", st)
		}
		if n := f.rows(f.db); n != 1 {
			t.Fatalf("%d rows applied, want 1 (p2's)", n)
		}
	})
}

// TestHandlerState: xa.Handler answers a state query with 200 and
// Concord-State.
func TestHandlerState(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		h := Handler(f.db, f.d, nil)
		b := f.branch("s")
		b.Op, b.Mode = participant.OpState, "3pc"
		req := httptest.NewRequestWithContext(f.ctx, http.MethodPost, "/xa", strings.NewReader(""))
		b.SetHeaders(req.Header)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Header().Get(participant.HeaderState) != string(participant.PeerAborted) {
			t.Fatalf("state query: %d, %s %q; want 200 and aborted", rec.Code, participant.HeaderState, rec.Header().Get(participant.HeaderState))
		}
		if err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 1, nil)); !errors.Is(err, participant.ErrRejected) {
			t.Fatalf("pre-commit after answering aborted: %v, want ErrRejected", err)
		}
	})
}

// TestStatePrepareRace runs 3PC state queries and pre-commits of the same
// branches concurrently: an "aborted" answer must mean the pre-commit did
// not succeed and never will, and "precommitted" that the branch is
// prepared.
func TestStatePrepareRace(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		const rounds = 12
		for i := range rounds {
			b := f.branch(fmt.Sprintf("r%d", i))
			var wg sync.WaitGroup
			var perr, serr error
			var st participant.PeerState
			start := make(chan struct{})
			wg.Go(func() {
				<-start
				perr = Prepare(f.ctx, f.db, f.d, b, f.insert(i, 0, nil))
			})
			wg.Go(func() {
				<-start
				q := b
				q.Mode = "3pc"
				st, serr = State(f.ctx, f.db, f.d, q)
			})
			close(start)
			wg.Wait()
			if serr != nil {
				t.Fatalf("round %d: State: %v", i, serr)
			}
			switch st {
			case participant.PeerAborted:
				if perr == nil || f.prepared(b) {
					t.Fatalf("round %d: answered aborted, but the prepare succeeded (prepared %v)", i, f.prepared(b))
				}
				if err := Prepare(f.ctx, f.db, f.d, b, f.insert(i, 0, nil)); !errors.Is(err, participant.ErrRejected) {
					t.Fatalf("round %d: prepare after answering aborted: %v, want ErrRejected", i, err)
				}
			case participant.PeerPreCommitted:
				if perr != nil || !f.prepared(b) {
					t.Fatalf("round %d: answered precommitted, but prepare: %v (prepared %v)", i, perr, f.prepared(b))
				}
				if err := Abort(f.ctx, f.db, f.d, b); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("round %d: answer %s, want aborted or precommitted", i, st)
			}
		}
		if n := f.rows(f.db); n != 0 {
			t.Fatalf("%d rows applied, want 0", n)
		}
	})
}

// TestAskXAPeer: a participant running a termination protocol asks an XA
// branch through participant.AskPeer over HTTP, as twophase does, and
// learns the branch's commit.
func TestAskXAPeer(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		srv := httptest.NewServer(Handler(f.db, f.d, nil))
		defer srv.Close()
		b := f.branch("x")
		peer := participant.Peer{Branch: b.BranchID, URL: srv.URL}
		if err := Prepare(f.ctx, f.db, f.d, b, f.insert(1, 1, nil)); err != nil {
			t.Fatal(err)
		}
		if st, err := participant.AskPeer(f.ctx, nil, b.GID, "2pc", peer); err != nil || st != participant.PeerVoted {
			t.Fatalf("prepared: %s, %v; want voted", st, err)
		}
		if err := Commit(f.ctx, f.db, f.d, b); err != nil {
			t.Fatal(err)
		}
		if st, err := participant.AskPeer(f.ctx, nil, b.GID, "2pc", peer); err != nil || st != participant.PeerCommitted {
			t.Fatalf("committed: %s, %v; want committed", st, err)
		}
	})
}
