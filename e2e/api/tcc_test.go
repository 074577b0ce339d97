package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
)

// tccBranches calls each branch's try on p through t, as an initiator does.
func tccBranches(p *recorder, ids ...string) func(ctx context.Context, t *client.TCC) error {
	return func(ctx context.Context, t *client.TCC) error {
		for _, id := range ids {
			_, err := t.CallBranch(ctx, id, fmt.Sprintf(`{"branch":%q}`, id), p.url("/"+id+"/try"), p.url("/"+id+"/confirm"), p.url("/"+id+"/cancel"))
			if err != nil {
				return err
			}
		}
		return nil
	}
}

func TestTCC(t *testing.T) {
	t.Parallel()
	srv := serve(t)
	c := client.New(srv.URL)

	t.Run("commit confirms every branch", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("tcc-ok")
		tx, err := c.RunTCC(t.Context(), gid, client.Options{}, tccBranches(p, "x", "y"))
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusSucceeded)
		if tx.Mode != "tcc" || len(tx.Branches) != 2 {
			t.Fatalf("mode %q with %d branches, want tcc with 2", tx.Mode, len(tx.Branches))
		}
		lastTry := p.only(t, "/y/try")
		for _, id := range []string{"x", "y"} {
			try := p.only(t, "/"+id+"/try")
			if try.op() != "try" || try.mode() != "tcc" || try.gid() != gid || try.branch() != id {
				t.Errorf("try of %s: op=%q mode=%q gid=%q branch=%q", id, try.op(), try.mode(), try.gid(), try.branch())
			}
			conf := p.only(t, "/"+id+"/confirm")
			if conf.op() != "confirm" || conf.mode() != "tcc" || conf.gid() != gid || conf.branch() != id || conf.Body != fmt.Sprintf(`{"branch":%q}`, id) {
				t.Errorf("confirm of %s: op=%q mode=%q gid=%q branch=%q body=%q", id, conf.op(), conf.mode(), conf.gid(), conf.branch(), conf.Body)
			}
			if conf.Seq < lastTry.Done {
				t.Errorf("%s confirmed before the last try returned", id)
			}
			if b := branchOf(t, tx, id); b.ForwardOp != "confirm" || b.ForwardStatus != "done" || b.BackwardStatus != "idle" {
				t.Errorf("branch %s: %s=%s cancel=%s", id, b.ForwardOp, b.ForwardStatus, b.BackwardStatus)
			}
		}
		if n := p.count("/x/cancel") + p.count("/y/cancel"); n != 0 {
			t.Errorf("%d cancel calls on a committed transaction", n)
		}
	})

	t.Run("rejected try cancels every branch", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		p.on("/y/try", fixed(http.StatusConflict, "insufficient funds"))
		gid := newGID("tcc-reject")
		tx, err := c.RunTCC(t.Context(), gid, client.Options{}, tccBranches(p, "x", "y"))
		if !errors.Is(err, client.ErrTryRejected) || !strings.Contains(err.Error(), "insufficient funds") {
			t.Fatalf("RunTCC error %v, want ErrTryRejected with the participant's reason", err)
		}
		wantStatus(t, tx, client.StatusAborted)
		if !strings.Contains(tx.Reason, "rolled back") {
			t.Errorf("reason %q", tx.Reason)
		}
		// y's try was refused, yet y is cancelled too: the coordinator
		// cannot know whether a try took effect, and cancel must tolerate
		// a try that did nothing.
		for _, id := range []string{"x", "y"} {
			cancel := p.only(t, "/"+id+"/cancel")
			if cancel.op() != "cancel" || cancel.branch() != id || cancel.gid() != gid {
				t.Errorf("cancel of %s: op=%q branch=%q gid=%q", id, cancel.op(), cancel.branch(), cancel.gid())
			}
			if p.count("/"+id+"/confirm") != 0 {
				t.Errorf("%s confirmed in a rolled back transaction", id)
			}
		}
	})

	t.Run("deadline cancels without the initiator", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("tcc-deadline")
		var begun txReply
		post(t, srv.URL, "BeginTCC", fmt.Sprintf(`{"gid":%q,"options":{"timeout_ms":300}}`, gid)).decode(t, &begun)
		if begun.Transaction.Status != "running" || begun.Transaction.Deadline == "" {
			t.Fatalf("BeginTCC: status %q deadline %q", begun.Transaction.Status, begun.Transaction.Deadline)
		}
		for _, id := range []string{"x", "y"} {
			body := fmt.Sprintf(`{"gid":%q,"branch_id":%q,"confirm":%q,"cancel":%q,"payload":"p-%s"}`, gid, id, p.url("/"+id+"/confirm"), p.url("/"+id+"/cancel"), id)
			var reg txReply
			post(t, srv.URL, "RegisterBranch", body).decode(t, &reg)
		}
		// The initiator is gone: no commit, no rollback.
		tx := wait(t, c, gid)
		wantStatus(t, tx, client.StatusAborted)
		if !strings.Contains(tx.Reason, "deadline") {
			t.Errorf("reason %q, want the deadline", tx.Reason)
		}
		for _, id := range []string{"x", "y"} {
			if got := p.only(t, "/"+id+"/cancel").Body; got != "p-"+id {
				t.Errorf("cancel of %s got body %q", id, got)
			}
			if p.count("/"+id+"/confirm") != 0 {
				t.Errorf("%s confirmed after the deadline", id)
			}
		}
		r := post(t, srv.URL, "CommitTCC", fmt.Sprintf(`{"gid":%q}`, gid))
		if r.status != http.StatusBadRequest || r.code != "failed_precondition" || !strings.Contains(r.message, "aborted") {
			t.Errorf("late CommitTCC: HTTP %d %s %q, want 400 failed_precondition naming the state", r.status, r.code, r.message)
		}
	})

	t.Run("commit after the deadline cancelled", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("tcc-late")
		tx, err := c.RunTCC(t.Context(), gid, client.Options{Timeout: 300 * time.Millisecond}, func(ctx context.Context, tc *client.TCC) error {
			if err := tccBranches(p, "x")(ctx, tc); err != nil {
				return err
			}
			// A slow initiator: by the time it commits, the coordinator
			// has cancelled on its own.
			eventually(t, 30*time.Second, "the deadline cancel", func() bool {
				cur, err := c.Get(ctx, tc.GID)
				return err == nil && cur.Status == client.StatusAborted
			})
			return nil
		})
		if !errors.Is(err, client.ErrPrecondition) {
			t.Fatalf("RunTCC committing after the deadline: tx %v err %v, want ErrPrecondition", tx, err)
		}
		if p.count("/x/cancel") != 1 || p.count("/x/confirm") != 0 {
			t.Errorf("calls %v, want one cancel and no confirm", paths(p.received()))
		}
	})

	t.Run("registering a branch again", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("tcc-rereg")
		var r txReply
		post(t, srv.URL, "BeginTCC", fmt.Sprintf(`{"gid":%q}`, gid)).decode(t, &r)
		reg := func(payload string) apiReply {
			return post(t, srv.URL, "RegisterBranch", fmt.Sprintf(`{"gid":%q,"branch_id":"x","confirm":%q,"cancel":%q,"payload":%q}`,
				gid, p.url("/x/confirm"), p.url("/x/cancel"), payload))
		}
		reg("same").decode(t, &r)
		reg("same").decode(t, &r) // a retried registration is harmless
		if len(r.Transaction.Branches) != 1 {
			t.Errorf("%d branches after registering x twice, want 1", len(r.Transaction.Branches))
		}
		if got := reg("different"); got.status != http.StatusConflict || got.code != "already_exists" || !strings.Contains(got.message, `"x"`) {
			t.Errorf("x with a different payload: HTTP %d %s %q, want 409 already_exists naming the branch", got.status, got.code, got.message)
		}
		post(t, srv.URL, "RollbackTCC", fmt.Sprintf(`{"gid":%q,"wait":true}`, gid)).decode(t, &r)
		if r.Transaction.Status != client.StatusAborted {
			t.Errorf("rollback: status %q", r.Transaction.Status)
		}
		if got := p.only(t, "/x/cancel").Body; got != "same" {
			t.Errorf("cancel body %q, want the first registration's payload", got)
		}
		if got := reg("same"); got.status != http.StatusBadRequest || got.code != "failed_precondition" {
			t.Errorf("registering after the rollback: HTTP %d %s %q, want 400 failed_precondition", got.status, got.code, got.message)
		}
	})

	t.Run("nested branch registered by a try", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		p.on("/x/try", func(r *http.Request) (int, string) {
			sub, err := c.TCCFromRequest(r)
			if err != nil {
				return http.StatusBadRequest, err.Error()
			}
			if _, err := sub.CallBranch(r.Context(), "x.sub", "sub-payload", p.url("/sub/try"), p.url("/sub/confirm"), p.url("/sub/cancel")); err != nil {
				return http.StatusInternalServerError, err.Error()
			}
			return http.StatusOK, "reserved"
		})
		gid := newGID("tcc-nested")
		tx, err := c.RunTCC(t.Context(), gid, client.Options{}, tccBranches(p, "x", "y"))
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusSucceeded)
		if len(tx.Branches) != 3 {
			t.Fatalf("%d branches, want x, x.sub and y", len(tx.Branches))
		}
		if got := p.only(t, "/sub/try"); got.gid() != gid || got.branch() != "x.sub" {
			t.Errorf("sub-branch try: gid %q branch %q", got.gid(), got.branch())
		}
		for _, path := range []string{"/x/confirm", "/y/confirm", "/sub/confirm"} {
			p.only(t, path)
		}
		if got := p.only(t, "/sub/confirm"); got.Body != "sub-payload" || got.branch() != "x.sub" {
			t.Errorf("sub-branch confirm: body %q branch %q", got.Body, got.branch())
		}
		if b := branchOf(t, tx, "x.sub"); b.ForwardStatus != "done" {
			t.Errorf("x.sub confirm %s", b.ForwardStatus)
		}
	})
}
