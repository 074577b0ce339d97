package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
)

// alertBody is the JSON the alert webhook receives.
type alertBody struct {
	Kind    string `json:"kind"`
	GID     string `json:"gid"`
	Mode    string `json:"mode"`
	Message string `json:"message"`
}

func TestOperator(t *testing.T) {
	t.Parallel()
	hook := newRecorder(t)
	srv := serve(t, "-alert-webhook", hook.url("/alerts"), "-max-attempts", "2", "-retry-initial", "20ms", "-retry-max", "40ms")
	c := client.New(srv.URL)

	t.Run("stuck compensation, alert, retry from the CLI", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		var healthy atomic.Bool
		p.on("/b1/compensate", func(*http.Request) (int, string) {
			if healthy.Load() {
				return http.StatusOK, "SUCCESS"
			}
			return http.StatusInternalServerError, "database down"
		})
		p.on("/b2/action", fixed(http.StatusConflict, "no seats left"))
		gid := newGID("stuck")
		tx, err := c.NewSaga(gid).
			Add(p.url("/b1/action"), p.url("/b1/compensate"), "one").
			Add(p.url("/b2/action"), p.url("/b2/compensate"), "two").
			SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusStuck)
		if tx.StuckPhase != "compensating" || !strings.Contains(tx.StuckReason, "branch 1") || !strings.Contains(tx.StuckReason, "database down") {
			t.Errorf("stuck_phase %q stuck_reason %q, want compensating and branch 1's error", tx.StuckPhase, tx.StuckReason)
		}
		if !strings.Contains(tx.Reason, "branch 2") || !strings.Contains(tx.Reason, "no seats left") {
			t.Errorf("reason %q, want why the saga aborted: branch 2's rejection", tx.Reason)
		}
		if n := p.count("/b1/compensate"); n != 2 {
			t.Errorf("compensation tried %d times with -max-attempts 2", n)
		}

		var alert alertBody
		eventually(t, 30*time.Second, "the stuck alert on the webhook", func() bool {
			for _, cl := range hook.received("/alerts") {
				var a alertBody
				if json.Unmarshal([]byte(cl.Body), &a) == nil && a.GID == gid {
					alert = a
					return true
				}
			}
			return false
		})
		if alert.Kind != "stuck" || alert.Mode != "saga" || !strings.Contains(alert.Message, gid) {
			t.Errorf("alert %+v", alert)
		}
		eventually(t, 30*time.Second, "an ALERT line on stderr", func() bool {
			for _, line := range strings.Split(srv.Stderr(), "\n") {
				if strings.Contains(line, "ALERT stuck") && strings.Contains(line, gid) {
					return true
				}
			}
			return false
		})

		healthy.Store(true)
		out := cli(t, "tx", "retry", "-addr", srv.URL, gid).wantExit(t, 0)
		if !strings.Contains(out.stdout, gid) {
			t.Errorf("tx retry printed:\n%s", out.stdout)
		}
		final := wait(t, c, gid)
		wantStatus(t, final, client.StatusAborted)
		if final.StuckPhase != "" || final.StuckReason != "" {
			t.Errorf("aborted after the retry but still stuck_phase %q stuck_reason %q", final.StuckPhase, final.StuckReason)
		}
		if n := p.count("/b1/compensate"); n != 3 {
			t.Errorf("compensation called %d times in all, want 2 failures and 1 success", n)
		}

		// show prints every attempt of every branch.
		show := cli(t, "tx", "show", "-addr", srv.URL, gid).wantExit(t, 0)
		attemptLine := regexp.MustCompile(`(?m)^ +\+[0-9.]+m?s +(\w+) +#(\d+) +(\w+)`)
		lines := attemptLine.FindAllStringSubmatch(show.stdout, -1)
		var want []string
		for _, b := range final.Branches {
			for _, a := range b.Attempts {
				want = append(want, fmt.Sprintf("%s #%d %s", a.Op, a.Number, a.Outcome))
			}
		}
		var got []string
		for _, l := range lines {
			got = append(got, fmt.Sprintf("%s #%s %s", l[1], l[2], l[3]))
		}
		if len(want) != 5 || strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("tx show attempts %q, want %q (5 attempts)\n%s", got, want, show.stdout)
		}
		if !strings.Contains(show.stdout, "status:    aborted") || !strings.Contains(show.stdout, "database down") {
			t.Errorf("tx show lacks the status or the failed attempts' error:\n%s", show.stdout)
		}

		list := cli(t, "tx", "list", "-addr", srv.URL, "-status", "aborted").wantExit(t, 0)
		if !strings.Contains(list.stdout, gid) {
			t.Errorf("tx list -status aborted does not list %s:\n%s", gid, list.stdout)
		}
		list = cli(t, "tx", "list", "-addr", srv.URL, "-status", "stuck").wantExit(t, 0)
		if strings.Contains(list.stdout, gid) {
			t.Errorf("tx list -status stuck lists the aborted %s:\n%s", gid, list.stdout)
		}
	})

	t.Run("abort a running saga", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		slow, release := hold(t)
		p.on("/b1/action", slow)
		gid := newGID("abort-saga")
		if _, err := c.NewSaga(gid).
			Add(p.url("/b1/action"), p.url("/b1/compensate"), "one").
			Add(p.url("/b2/action"), p.url("/b2/compensate"), "two").
			Submit(t.Context()); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the slow action", func() bool { return p.count("/b1/action") == 1 })
		out := cli(t, "tx", "abort", "-addr", srv.URL, "-reason", "customer called", gid).wantExit(t, 0)
		if !strings.Contains(out.stdout, "compensating") {
			t.Errorf("tx abort printed:\n%s", out.stdout)
		}
		release()
		tx := wait(t, c, gid)
		wantStatus(t, tx, client.StatusAborted)
		if !strings.Contains(tx.Reason, "customer called") {
			t.Errorf("reason %q, want the operator's", tx.Reason)
		}
		// The action in flight when the operator aborted may have taken
		// effect, so it is compensated, after it returned.
		act, comp := p.only(t, "/b1/action"), p.only(t, "/b1/compensate")
		if comp.Seq < act.Done {
			t.Error("compensation started before the action returned")
		}
		if n := p.count("/b2/action") + p.count("/b2/compensate"); n != 0 {
			t.Errorf("branch 2 called %d times after the abort", n)
		}
	})

	t.Run("abort a trying TCC", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("abort-tcc")
		var begun txReply
		post(t, srv.URL, "BeginTCC", fmt.Sprintf(`{"gid":%q}`, gid)).decode(t, &begun)
		for _, id := range []string{"x", "y"} {
			var reg txReply
			post(t, srv.URL, "RegisterBranch", fmt.Sprintf(`{"gid":%q,"branch_id":%q,"confirm":%q,"cancel":%q}`,
				gid, id, p.url("/"+id+"/confirm"), p.url("/"+id+"/cancel"))).decode(t, &reg)
		}
		cli(t, "tx", "abort", "-addr", srv.URL, gid).wantExit(t, 0)
		tx := wait(t, c, gid)
		wantStatus(t, tx, client.StatusAborted)
		if !strings.Contains(tx.Reason, "aborted by operator") {
			t.Errorf("reason %q", tx.Reason)
		}
		for _, id := range []string{"x", "y"} {
			p.only(t, "/"+id+"/cancel")
			if p.count("/"+id+"/confirm") != 0 {
				t.Errorf("%s confirmed", id)
			}
		}
		r := post(t, srv.URL, "CommitTCC", fmt.Sprintf(`{"gid":%q}`, gid))
		if r.status != http.StatusBadRequest || r.code != "failed_precondition" {
			t.Errorf("CommitTCC after the abort: HTTP %d %s %q", r.status, r.code, r.message)
		}
	})

	t.Run("abort a decided transaction", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("abort-late")
		tx, err := c.NewSaga(gid).Add(p.url("/a"), p.url("/a/undo"), nil).SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusSucceeded)
		out := cli(t, "tx", "abort", "-addr", srv.URL, gid).wantExit(t, 1)
		if !strings.Contains(out.stderr, "succeeded") {
			t.Errorf("tx abort of a succeeded saga should name its state; stderr:\n%s", out.stderr)
		}
		out = cli(t, "tx", "retry", "-addr", srv.URL, gid).wantExit(t, 1)
		if !strings.Contains(out.stderr, "succeeded") {
			t.Errorf("tx retry of a succeeded saga should name its state; stderr:\n%s", out.stderr)
		}
		if p.count("/a/undo") != 0 || p.count("/a") != 1 {
			t.Errorf("calls %v after abort and retry of a succeeded saga, want only the action", paths(p.received()))
		}
	})

	t.Run("command-line mistakes", func(t *testing.T) {
		t.Parallel()
		cli(t, "tx", "show", "-addr", srv.URL).wantExit(t, 2)
		cli(t, "tx", "frobnicate", "-addr", srv.URL).wantExit(t, 2)
		cli(t, "tx").wantExit(t, 2)
		cli(t, "tx", "list", "-addr", srv.URL, "-bogus-flag").wantExit(t, 2)
		out := cli(t, "tx", "show", "-addr", srv.URL, "no-such-gid").wantExit(t, 1)
		if !strings.Contains(out.stderr, "not found") {
			t.Errorf("tx show of an unknown gid; stderr:\n%s", out.stderr)
		}
		out = cli(t, "tx", "list", "-addr", srv.URL, "-status", "bogus")
		if out.code == 0 || !strings.Contains(out.stderr, "bogus") {
			t.Errorf("tx list -status bogus: exit %d, stderr:\n%s", out.code, out.stderr)
		}
	})

	t.Run("flags after the gid", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("flags-last")
		if _, err := c.NewSaga(gid).Add(p.url("/a"), p.url("/a/undo"), nil).SubmitAndWait(t.Context()); err != nil {
			t.Fatal(err)
		}
		// The form operators type from the docs: concord tx show GID -addr URL.
		out := cli(t, "tx", "show", gid, "-addr", srv.URL).wantExit(t, 0)
		if !strings.Contains(out.stdout, gid) {
			t.Errorf("tx show GID -addr URL printed:\n%s", out.stdout)
		}
	})
}
