package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/concordtm/concord/client"
)

// TestBadInput sends malformed and out-of-bounds requests as raw HTTP/JSON
// and checks each is refused with the right status and a message naming
// the problem, that the server stays up, and that nothing was stored.
func TestBadInput(t *testing.T) {
	t.Parallel()
	srv := serve(t, "-max-branches", "3", "-max-payload-bytes", "100", "-max-request-bytes", "4096")
	c := client.New(srv.URL)
	p := newRecorder(t)
	a, u := p.url("/a"), p.url("/a/undo")

	// An operation illegal in the transaction's state, which leaves the
	// stored transaction as it was.
	gid := newGID("illegal")
	var r txReply
	post(t, srv.URL, "BeginTCC", fmt.Sprintf(`{"gid":%q}`, gid)).decode(t, &r)
	post(t, srv.URL, "RollbackTCC", fmt.Sprintf(`{"gid":%q,"wait":true}`, gid)).decode(t, &r)
	if r.Transaction.Status != "aborted" {
		t.Fatalf("rollback of an empty TCC: status %q", r.Transaction.Status)
	}
	got := post(t, srv.URL, "CommitTCC", fmt.Sprintf(`{"gid":%q}`, gid))
	if got.status != http.StatusBadRequest || got.code != "failed_precondition" || !strings.Contains(got.message, "commit") || !strings.Contains(got.message, "aborted") {
		t.Errorf("CommitTCC after RollbackTCC: HTTP %d %s %q, want 400 failed_precondition naming the event and the state", got.status, got.code, got.message)
	}
	sagaGID := newGID("saga")
	if _, err := c.NewSaga(sagaGID).Add(a, u, nil).SubmitAndWait(t.Context()); err != nil {
		t.Fatal(err)
	}
	got = post(t, srv.URL, "RollbackTCC", fmt.Sprintf(`{"gid":%q}`, sagaGID))
	if got.status != http.StatusBadRequest || got.code != "failed_precondition" || !strings.Contains(got.message, "saga") {
		t.Errorf("RollbackTCC on a saga: HTTP %d %s %q", got.status, got.code, got.message)
	}

	// -max-branches holds for TCC registrations too.
	tccGID := newGID("full")
	post(t, srv.URL, "BeginTCC", fmt.Sprintf(`{"gid":%q}`, tccGID)).decode(t, &r)
	for i := range 4 {
		got := post(t, srv.URL, "RegisterBranch", fmt.Sprintf(`{"gid":%q,"branch_id":"b%d","confirm":%q,"cancel":%q}`, tccGID, i, a, u))
		if i < 3 && got.status != http.StatusOK {
			t.Fatalf("registering branch %d of 3: HTTP %d %s %q", i, got.status, got.code, got.message)
		}
		if i == 3 && (got.status != http.StatusBadRequest || got.code != "invalid_argument" || !strings.Contains(got.message, "at most 3")) {
			t.Errorf("a 4th branch with -max-branches 3: HTTP %d %s %q, want 400 invalid_argument", got.status, got.code, got.message)
		}
	}
	if tx, err := c.Get(t.Context(), tccGID); err != nil || len(tx.Branches) != 3 {
		t.Errorf("after the refused registration: %v, %v; want 3 branches", tx, err)
	}

	stored := countStored(t, srv.URL)
	if stored != 3 {
		t.Fatalf("%d transactions stored, want the 3 created above", stored)
	}
	calls := len(p.received())

	saga := func(branches ...string) string {
		return `{"branches":[` + strings.Join(branches, ",") + `]}`
	}
	branch := func(action, compensate string) string {
		return fmt.Sprintf(`{"action":%q,"compensate":%q}`, action, compensate)
	}
	good := branch(a, u)
	big := strings.Repeat("x", 101)
	cases := []struct {
		name, method, body string
		status             int
		code               string
		mentions           []string
	}{
		{"malformed JSON", "SubmitSaga", `{"branches": [`, 400, "invalid_argument", []string{"unmarshal"}},
		{"not an object", "SubmitSaga", `[1,2]`, 400, "invalid_argument", []string{"unmarshal"}},
		{"empty body", "SubmitSaga", ``, 400, "invalid_argument", []string{"empty body"}},
		{"unknown field", "SubmitSaga", `{"branchez":[]}`, 400, "invalid_argument", []string{"branchez"}},
		{"camelCase typo field", "SubmitSaga", saga(`{"action":"http://h/a","compensate":"http://h/c","payLoad":"x"}`), 400, "invalid_argument", []string{"payLoad"}},
		{"wrong type", "SubmitSaga", `{"branches":"all of them"}`, 400, "invalid_argument", []string{"all of them"}},
		{"no branches", "SubmitSaga", `{}`, 400, "invalid_argument", []string{"at least one branch"}},
		{"missing action URL", "SubmitSaga", saga(fmt.Sprintf(`{"compensate":%q}`, u)), 400, "invalid_argument", []string{"branches[0].action", "required"}},
		{"missing compensate URL", "SubmitSaga", saga(good, fmt.Sprintf(`{"action":%q}`, a)), 400, "invalid_argument", []string{"branches[1].compensate", "required"}},
		{"gRPC URL without a method", "SubmitSaga", saga(branch("grpc://127.0.0.1:9/shop.Inventory", u)), 400, "invalid_argument", []string{"grpc://host:port/package.Service/Method"}},
		{"ftp URL", "SubmitSaga", saga(branch("ftp://files.example/x", u)), 400, "invalid_argument", []string{"ftp://files.example/x", "http, https, grpc or grpcs"}},
		{"URL without host", "SubmitSaga", saga(branch("http:///no-host", u)), 400, "invalid_argument", []string{"http:///no-host", "no host"}},
		{"URL with an empty host name", "SubmitSaga", saga(branch("http://:/a", u)), 400, "invalid_argument", []string{"http://:/a", "host"}},
		{"relative URL", "SubmitSaga", saga(branch("/just/a/path", u)), 400, "invalid_argument", []string{"/just/a/path"}},
		{"too many branches", "SubmitSaga", saga(good, good, good, good), 400, "invalid_argument", []string{"4 given", "at most 3"}},
		{"oversize payload", "SubmitSaga", saga(fmt.Sprintf(`{"action":%q,"compensate":%q,"payload":%q}`, a, u, big)), 400, "invalid_argument", []string{"101 bytes", "at most 100"}},
		{"request body too large", "SubmitSaga", `{"gid":"` + strings.Repeat("g", 5000) + `"}`, 413, "resource_exhausted", []string{"4096"}},
		{"bad gid characters", "SubmitSaga", `{"gid":"order 42/x",` + saga(good)[1:], 400, "invalid_argument", []string{"gid", "order 42/x", "letters, digits"}},
		{"gid too long", "SubmitSaga", `{"gid":"` + strings.Repeat("g", 129) + `",` + saga(good)[1:], 400, "invalid_argument", []string{"gid", "129 bytes"}},
		{"bad branch id", "SubmitSaga", saga(fmt.Sprintf(`{"id":"a/b","action":%q,"compensate":%q}`, a, u)), 400, "invalid_argument", []string{"branches[0].id", "a/b"}},
		{"duplicate branch ids", "SubmitSaga", saga(fmt.Sprintf(`{"id":"x","action":%q,"compensate":%q}`, a, u), fmt.Sprintf(`{"id":"x","action":%q,"compensate":%q}`, a, u)), 400, "invalid_argument", []string{"duplicate", `"x"`}},
		{"after in a sequential saga", "SubmitSaga", saga(good, fmt.Sprintf(`{"action":%q,"compensate":%q,"after":["1"]}`, a, u)), 400, "invalid_argument", []string{"concurrent"}},
		{"after an unknown branch", "SubmitSaga", `{"concurrent":true,` + saga(fmt.Sprintf(`{"id":"x","action":%q,"compensate":%q,"after":["nope"]}`, a, u))[1:], 400, "invalid_argument", []string{"nope"}},
		{"dependency cycle", "SubmitSaga", `{"concurrent":true,` + saga(fmt.Sprintf(`{"id":"x","action":%q,"compensate":%q,"after":["y"]}`, a, u), fmt.Sprintf(`{"id":"y","action":%q,"compensate":%q,"after":["x"]}`, a, u))[1:], 400, "invalid_argument", []string{"cycle"}},
		{"negative timeout", "SubmitSaga", `{"options":{"timeout_ms":-1},` + saga(good)[1:], 400, "invalid_argument", []string{"options.timeout_ms", "-1"}},
		{"negative max_attempts", "SubmitSaga", `{"options":{"max_attempts":-3},` + saga(good)[1:], 400, "invalid_argument", []string{"options.max_attempts", "-3"}},
		{"negative retry_initial", "BeginTCC", `{"options":{"retry_initial_ms":-20}}`, 400, "invalid_argument", []string{"options.retry_initial_ms", "-20"}},
		{"huge timeout", "BeginTCC", `{"options":{"timeout_ms":"9223372036854775807"}}`, 400, "invalid_argument", []string{"options.timeout_ms"}},
		{"negative wait_timeout", "GetTransaction", fmt.Sprintf(`{"gid":%q,"wait":true,"wait_timeout_ms":-5}`, sagaGID), 400, "invalid_argument", []string{"wait_timeout_ms", "-5"}},
		{"unknown gid", "GetTransaction", `{"gid":"no-such-gid"}`, 404, "not_found", []string{"no-such-gid"}},
		{"get without gid", "GetTransaction", `{}`, 400, "invalid_argument", []string{"gid is required"}},
		{"retry unknown gid", "RetryTransaction", `{"gid":"no-such-gid"}`, 404, "not_found", []string{"no-such-gid"}},
		{"abort unknown gid", "AbortTransaction", `{"gid":"no-such-gid"}`, 404, "not_found", []string{"no-such-gid"}},
		{"abort reason too long", "AbortTransaction", fmt.Sprintf(`{"gid":%q,"reason":%q}`, sagaGID, strings.Repeat("r", 1025)), 400, "invalid_argument", []string{"reason", "1025"}},
		{"commit unknown gid", "CommitTCC", `{"gid":"no-such-gid"}`, 404, "not_found", []string{"no-such-gid"}},
		{"register without branch id", "RegisterBranch", fmt.Sprintf(`{"gid":"g","confirm":%q,"cancel":%q}`, a, u), 400, "invalid_argument", []string{"branch_id is required"}},
		{"register ftp confirm", "RegisterBranch", fmt.Sprintf(`{"gid":"g","branch_id":"b","confirm":"ftp://h/c","cancel":%q}`, u), 400, "invalid_argument", []string{"confirm", "ftp://h/c"}},
		{"register oversize payload", "RegisterBranch", fmt.Sprintf(`{"gid":"g","branch_id":"b","confirm":%q,"cancel":%q,"payload":%q}`, a, u, big), 400, "invalid_argument", []string{"101 bytes"}},
		{"register into unknown gid", "RegisterBranch", fmt.Sprintf(`{"gid":"no-such-gid","branch_id":"b","confirm":%q,"cancel":%q}`, a, u), 404, "not_found", []string{"no-such-gid"}},
		{"unknown list status", "ListTransactions", `{"status":"bogus"}`, 400, "invalid_argument", []string{"bogus", "aborted"}},
		{"unknown list mode", "ListTransactions", `{"mode":"xa"}`, 400, "invalid_argument", []string{"xa", "saga, tcc"}},
		{"negative list limit", "ListTransactions", `{"limit":-1}`, 400, "invalid_argument", []string{"limit = -1"}},
		{"malformed page_token", "ListTransactions", `{"page_token":"!!!not base64"}`, 400, "invalid_argument", []string{"page_token"}},
		{"page_token of garbage", "ListTransactions", `{"page_token":"Zm9vYmFy"}`, 400, "invalid_argument", []string{"page_token"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stored := countStored(t, srv.URL)
			got := post(t, srv.URL, tc.method, tc.body)
			if got.status != tc.status || got.code != tc.code {
				t.Errorf("HTTP %d %s %q, want %d %s", got.status, got.code, got.message, tc.status, tc.code)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(got.message, m) {
					t.Errorf("message %q does not mention %q", got.message, m)
				}
			}
			checkAlive(t, srv.URL)
			if n := countStored(t, srv.URL); n != stored {
				t.Errorf("%d transactions stored after the bad request, want %d", n, stored)
			}
		})
	}

	t.Run("unsupported content type", func(t *testing.T) {
		got := postType(t, srv.URL, "NewGID", "text/plain", `{}`)
		if got.status != http.StatusUnsupportedMediaType {
			t.Errorf("text/plain body: HTTP %d %q, want 415", got.status, got.body)
		}
		checkAlive(t, srv.URL)
	})
	if n := len(p.received()); n != calls {
		t.Errorf("bad requests led to %d participant calls", n-calls)
	}
}

// checkAlive fails the test unless the server answers /healthz.
func checkAlive(t *testing.T, base string) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("server down: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: HTTP %d", resp.StatusCode)
	}
}

// countStored returns how many transactions the server lists.
func countStored(t *testing.T, base string) int {
	t.Helper()
	var list struct {
		Transactions []struct {
			GID string `json:"gid"`
		} `json:"transactions"`
		Next string `json:"next_page_token"`
	}
	post(t, base, "ListTransactions", `{"limit":1000}`).decode(t, &list)
	if list.Next != "" {
		t.Fatal("more than 1000 transactions")
	}
	return len(list.Transactions)
}
