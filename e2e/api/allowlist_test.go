package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// TestDestinationsRefusedAtSubmission: with -allow-destinations, a branch,
// check-back or broker URL outside the list is refused with 400
// invalid_argument naming the host; so is a URL at the coordinator's own
// listener (with or without a list); nothing is stored or called.
func TestDestinationsRefusedAtSubmission(t *testing.T) {
	t.Parallel()
	srv := serve(t, "-allow-destinations", "127.0.0.1,http://*.pay.internal")
	p := newRecorder(t)
	a, u := p.url("/a"), p.url("/a/undo")
	branch := func(action, compensate string) string {
		return fmt.Sprintf(`{"branches":[{"action":%q,"compensate":%q}]}`, action, compensate)
	}
	for _, tc := range []struct {
		name, method, body string
		mentions           []string
	}{
		{"own listener", "SubmitSaga", branch(srv.URL+"/concord.v1.CoordinatorService/AbortTransaction", u), []string{"branches[0].action", "own listener"}},
		{"own listener as localhost", "SubmitSaga", branch(a, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)+"/x"), []string{"branches[0].compensate", "own listener"}},
		{"metadata address", "SubmitSaga", branch("http://169.254.169.254/latest/meta-data", u), []string{"169.254.169.254", "allow-destinations"}},
		{"scheme not allowed", "SubmitSaga", branch("https://x.pay.internal/a", u), []string{"https://x.pay.internal", "allow-destinations"}},
		{"2PC branch", "SubmitTwoPC", `{"branches":[{"url":"http://10.0.0.1/p"}]}`, []string{"10.0.0.1", "allow-destinations"}},
		{"broker", "SendMessage", `{"destinations":[{"url":"amqp://u:s3cret@rabbit.evil/?exchange=e"}]}`, []string{"amqp://rabbit.evil", "allow-destinations"}},
		{"check-back", "PrepareMessage", fmt.Sprintf(`{"destinations":[{"url":%q}],"check_url":"http://internal.admin/check"}`, a), []string{"check_url", "internal.admin"}},
		{"subscription", "Subscribe", `{"topic":"t","subscriber":"s","url":"http://internal.admin/x"}`, []string{"subscription", "internal.admin"}},
	} {
		got := post(t, srv.URL, tc.method, tc.body)
		if got.status != 400 || got.code != "invalid_argument" {
			t.Errorf("%s: HTTP %d %s %q, want 400 invalid_argument", tc.name, got.status, got.code, got.message)
			continue
		}
		for _, m := range tc.mentions {
			if !strings.Contains(got.message, m) {
				t.Errorf("%s: message %q does not mention %q", tc.name, got.message, m)
			}
		}
		if strings.Contains(got.message, "s3cret") {
			t.Errorf("%s: message %q shows the password", tc.name, got.message)
		}
	}
	if n := countStored(t, srv.URL); n != 0 {
		t.Errorf("%d transactions stored after refusals, want 0", n)
	}
	if calls := p.received(); len(calls) != 0 {
		t.Errorf("the participant was called: %v", calls)
	}
	// An allowed destination still works.
	c := client.New(srv.URL)
	if _, err := c.NewSaga(newGID("allowed")).Add(a, u, nil).SubmitAndWait(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Without a list, only the own listener is refused.
	open := serve(t)
	if got := post(t, open.URL, "SubmitSaga", branch(open.URL+"/x", u)); got.status != 400 || !strings.Contains(got.message, "own listener") {
		t.Errorf("own listener without a list: HTTP %d %s %q", got.status, got.code, got.message)
	}
	if got := post(t, open.URL, "SubmitSaga", branch("http://169.254.169.254/x", u)); got.status != 200 {
		t.Errorf("any destination without a list: HTTP %d %s %q", got.status, got.code, got.message)
	}
}

// TestDestinationsRefusedAtCallTime: a transaction accepted before the
// allow-list changed is not called after a restart with a list that
// refuses its participant; the attempt says why, and the branch keeps
// waiting (an unknown outcome) instead of failing as if refused.
func TestDestinationsRefusedAtCallTime(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newRecorder(t)
	first := proc.StartArmed(t, dir, "after-accept")
	gid := newGID("before-list")
	body := fmt.Sprintf(`{"gid":%q,"branches":[{"id":"b","action":%q,"compensate":%q}]}`, gid, p.url("/a"), p.url("/a/undo"))
	// The process dies before it answers.
	if resp, err := http.Post(first.URL+"/concord.v1.CoordinatorService/SubmitSaga", "application/json", strings.NewReader(body)); err == nil {
		resp.Body.Close()
	}
	first.ExpectCrash(t, "after-accept", 30*time.Second)

	srv := proc.Start(t, dir, nil, "-allow-destinations", "10.0.0.0/8", "-retry-initial", "50ms", "-retry-max", "100ms")
	c := client.New(srv.URL)
	var last string
	testenv.Eventually(t, 30*time.Second, "a refused attempt", func() bool {
		tx, err := c.Get(t.Context(), gid)
		if err != nil {
			return false
		}
		for _, at := range branchOf(t, tx, "b").Attempts {
			last = at.Error
			if strings.Contains(at.Error, "not called") && strings.Contains(at.Error, "allow-destinations") && at.Outcome == "unknown" {
				return true
			}
		}
		return false
	})
	if calls := p.received(); len(calls) != 0 {
		t.Errorf("the participant was called after the list refused it: %v (last error %q)", calls, last)
	}
}

// TestOpenListenerWarnsWithoutAllowList: listening beyond loopback without
// -allow-destinations logs a warning that names the setting; with a list,
// or on loopback, there is none.
func TestOpenListenerWarnsWithoutAllowList(t *testing.T) {
	t.Parallel()
	const warning = "without -allow-destinations"
	open := serve(t, "-addr", "0.0.0.0:0")
	listed := serve(t, "-addr", "0.0.0.0:0", "-allow-destinations", "*.internal")
	loopback := serve(t)
	testenv.Eventually(t, 10*time.Second, "the warning", func() bool { return strings.Contains(open.Stderr(), warning) })
	for name, srv := range map[string]*proc.Server{"with a list": listed, "on loopback": loopback} {
		if strings.Contains(srv.Stderr(), warning) {
			t.Errorf("%s: warned:\n%s", name, srv.Stderr())
		}
	}
}
