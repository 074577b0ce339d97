package api

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
)

// voter is a 2PC participant over HTTP: one URL per behaviour, recording
// the operations each (gid, branch) received in order.
type voter struct {
	srv *httptest.Server
	mu  sync.Mutex
	ops map[string][]string // gid/branch → ops
}

func newVoter(t *testing.T) *voter {
	v := &voter{ops: map[string][]string{}}
	v.srv = httptest.NewServer(participant.Handler(func(ctx context.Context, b participant.Branch, body []byte) error {
		v.mu.Lock()
		v.ops[b.GID+"/"+b.BranchID] = append(v.ops[b.GID+"/"+b.BranchID], string(b.Op))
		v.mu.Unlock()
		if b.Op == participant.OpCommit && string(body) == "commit-fails" {
			return errors.New("database unreachable")
		}
		if b.Op != participant.OpPrepare {
			return nil
		}
		switch string(body) {
		case "commit-fails":
			return nil // votes yes; its commit fails below
		case "no":
			return participant.Reject("stock short")
		case "read-only":
			return participant.ErrReadOnly
		}
		return nil
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *voter) got(gid, branch string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.ops[gid+"/"+branch])
}

func TestTwoPC(t *testing.T) {
	srv := serve(t)
	c := client.New(srv.URL)
	v := newVoter(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	t.Run("all vote yes: every branch prepares, then commits", func(t *testing.T) {
		tx, err := c.NewTwoPC("").Add(v.srv.URL, "yes").Add(v.srv.URL, "yes").SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, "succeeded")
		for _, b := range []string{"1", "2"} {
			if got := v.got(tx.GID, b); !slices.Equal(got, []string{"prepare", "commit"}) {
				t.Errorf("branch %s got %v, want [prepare commit]", b, got)
			}
		}
		if d, err := c.Decision(ctx, tx.GID); err != nil || d != "commit" {
			t.Errorf("decision %q, %v; want commit", d, err)
		}
	})

	t.Run("the seed's T-shirts: inventory votes no, the order aborts", func(t *testing.T) {
		tx, err := c.NewTwoPC("").AddBranch("order", v.srv.URL, "yes").AddBranch("inventory", v.srv.URL, "no").SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, "aborted")
		if got := v.got(tx.GID, "inventory"); !slices.Equal(got, []string{"prepare"}) {
			t.Errorf("inventory (voted no) got %v, want only [prepare]", got)
		}
		// The order may get its abort after the outcome is reported
		// (presumed abort needs no acknowledgement); wait for it.
		eventually(t, 5*time.Second, "the order (voted yes) to get [prepare abort]", func() bool {
			return slices.Equal(v.got(tx.GID, "order"), []string{"prepare", "abort"})
		})
		if d, err := c.Decision(ctx, tx.GID); err != nil || d != "abort" {
			t.Errorf("decision %q, %v; want abort", d, err)
		}
	})

	t.Run("a read-only voter gets no phase 2", func(t *testing.T) {
		tx, err := c.NewTwoPC("").Add(v.srv.URL, "read-only").Add(v.srv.URL, "yes").SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, "succeeded")
		if got := v.got(tx.GID, "1"); !slices.Equal(got, []string{"prepare"}) {
			t.Errorf("read-only branch got %v, want only [prepare]", got)
		}
		if got := v.got(tx.GID, "2"); !slices.Equal(got, []string{"prepare", "commit"}) {
			t.Errorf("yes branch got %v, want [prepare commit]", got)
		}
	})

	t.Run("a commit that keeps failing is in doubt, then stuck; tx in-doubt lists it", func(t *testing.T) {
		tx, err := c.NewTwoPC("").AddBranch("db", v.srv.URL, "commit-fails").AddBranch("ok", v.srv.URL, "yes").
			WithOptions(client.Options{MaxAttempts: 3, RetryInitial: 20 * time.Millisecond, RetryMax: 40 * time.Millisecond}).
			SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, "stuck")
		if tx.StuckPhase != "committing" {
			t.Errorf("stuck phase %q, want committing", tx.StuckPhase)
		}
		if d, err := c.Decision(ctx, tx.GID); err != nil || d != "commit" {
			t.Errorf("decision %q, %v; want commit (the decision stands while phase 2 is stuck)", d, err)
		}
		out := cli(t, "tx", "in-doubt", "-addr", srv.URL).wantExit(t, 0).stdout
		var line string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, tx.GID+" ") {
				if line != "" {
					t.Fatalf("more than one in-doubt branch for %s:\n%s", tx.GID, out)
				}
				line = l
			}
		}
		if !strings.Contains(line, " db ") || !strings.Contains(line, "commit failed") {
			t.Fatalf("tx in-doubt: want one line for branch db with phase 2 'commit failed', got:\n%s", out)
		}
	})

	t.Run("presumed abort: an unknown gid was never committed", func(t *testing.T) {
		if d, err := c.Decision(ctx, "never-seen-"+newGID("x")); err != nil || d != "abort" {
			t.Errorf("decision %q, %v; want abort", d, err)
		}
	})

	t.Run("decision for a saga is a precondition error", func(t *testing.T) {
		tx, err := c.NewSaga("").Add(v.srv.URL, v.srv.URL, nil).SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Decision(ctx, tx.GID); err == nil {
			t.Error("decision of a saga: no error")
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for name, body := range map[string]string{
			"no branches":   `{"gid":"bad-1"}`,
			"ftp url":       `{"branches":[{"url":"ftp://x/y"}]}`,
			"missing url":   `{"branches":[{"id":"a"}]}`,
			"unknown field": `{"branches":[{"url":"http://127.0.0.1:1/p","compensate":"x"}]}`,
		} {
			if r := post(t, srv.URL, "SubmitTwoPC", body); r.status != 400 {
				t.Errorf("%s: HTTP %d %s, want 400", name, r.status, r.body)
			}
		}
	})
}
