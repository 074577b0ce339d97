package participant

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func msgRecord(f *fixture, gid string) func(ctx context.Context, tx *sql.Tx) error {
	return f.record(Branch{GID: gid, BranchID: "order", Op: OpAction})
}

func (f *fixture) orderRows(t *testing.T, gid string) int {
	return f.runs(t, Branch{GID: gid, BranchID: "order", Op: OpAction})
}

func TestMessageCommittedThenCheckBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := t.Context()
		if err := f.br.DoMessage(ctx, "m1", msgRecord(f, "m1")); err != nil {
			t.Fatal(err)
		}
		// A repeat is a no-op: the local transaction committed once.
		if err := f.br.DoMessage(ctx, "m1", msgRecord(f, "m1")); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			ok, err := f.br.CheckBack(ctx, "m1")
			if err != nil || !ok {
				t.Fatalf("check-back after commit: committed=%v err=%v", ok, err)
			}
		}
		if n := f.orderRows(t, "m1"); n != 1 {
			t.Fatalf("local transaction ran %d times, want 1", n)
		}
	})
}

func TestMessageCheckBackFencesALateLocalTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := t.Context()
		ok, err := f.br.CheckBack(ctx, "m2")
		if err != nil || ok {
			t.Fatalf("check-back before the local transaction: committed=%v err=%v, want rolled back", ok, err)
		}
		// The producer was slow, not dead: its local transaction must not
		// commit now, or a message declared rolled back would have a commit.
		err = f.br.DoMessage(ctx, "m2", msgRecord(f, "m2"))
		if !errors.Is(err, ErrRejected) {
			t.Fatalf("late local transaction: %v, want ErrRejected", err)
		}
		if n := f.orderRows(t, "m2"); n != 0 {
			t.Fatalf("the fenced local transaction left %d rows", n)
		}
		if ok, err := f.br.CheckBack(ctx, "m2"); err != nil || ok {
			t.Fatalf("second check-back: committed=%v err=%v", ok, err)
		}
	})
}

func TestMessageFailedLocalTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := t.Context()
		boom := errors.New("insufficient stock")
		err := f.br.DoMessage(ctx, "m3", func(ctx context.Context, tx *sql.Tx) error {
			if err := msgRecord(f, "m3")(ctx, tx); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want the business error", err)
		}
		if ok, err := f.br.CheckBack(ctx, "m3"); err != nil || ok {
			t.Fatalf("check-back after a rollback: committed=%v err=%v", ok, err)
		}
		if n := f.orderRows(t, "m3"); n != 0 {
			t.Fatalf("rolled-back local transaction left %d rows", n)
		}
	})
}

// A check-back that arrives while the local transaction is in flight waits
// for it and reports its real outcome.
func TestMessageCheckBackWaitsForAnInflightLocalTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := t.Context()
		inside, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- f.br.DoMessage(ctx, "m4", func(ctx context.Context, tx *sql.Tx) error {
				if err := msgRecord(f, "m4")(ctx, tx); err != nil {
					return err
				}
				close(inside)
				<-release
				return nil
			})
		}()
		select {
		case <-inside:
		case err := <-done:
			t.Fatalf("local transaction ended early: %v", err)
		}
		answer := make(chan bool, 1)
		go func() {
			ok, err := f.br.CheckBack(ctx, "m4")
			if err != nil {
				t.Errorf("check-back: %v", err)
			}
			answer <- ok
		}()
		select {
		case ok := <-answer:
			t.Fatalf("check-back answered %v while the local transaction was in flight", ok)
		case <-time.After(300 * time.Millisecond):
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if ok := <-answer; !ok {
			t.Fatal("check-back said rolled back, but the local transaction committed")
		}
	})
}

func TestCheckBackHandler(t *testing.T) {
	f := newFixture(t, backends[0])
	ctx := t.Context()
	if err := f.br.DoMessage(ctx, "h1", msgRecord(f, "h1")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.br.CheckBackHandler())
	defer srv.Close()
	ask := func(gid string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
		if gid != "" {
			req.Header.Set(HeaderGID, gid)
		}
		req.Header.Set(HeaderOp, string(OpCheck))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := ask("h1"); c != http.StatusOK {
		t.Errorf("committed: %d, want 200", c)
	}
	if c := ask("h2"); c != http.StatusConflict {
		t.Errorf("never ran: %d, want 409", c)
	}
	if c := ask(""); c != http.StatusBadRequest {
		t.Errorf("no gid: %d, want 400", c)
	}
}
