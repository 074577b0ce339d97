package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
)

func TestSaga(t *testing.T) {
	t.Parallel()
	srv := serve(t)
	c := client.New(srv.URL)

	t.Run("sequential success", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("seq")
		// Payloads must arrive byte for byte: number formats, key order,
		// whitespace and non-JSON text included.
		payloads := []string{`{"amount": 10.50, "z": 1, "a": [1,2]}`, "plain text, not JSON: ✓", `  {"sku":"x-1"}` + "\n"}
		s := c.NewSaga(gid)
		for i, pl := range payloads {
			s.Add(p.url(fmt.Sprintf("/b%d/action", i+1)), p.url(fmt.Sprintf("/b%d/compensate", i+1)), pl)
		}
		tx, err := s.SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusSucceeded)
		if tx.GID != gid || tx.Mode != "saga" || tx.DecidedAt.IsZero() {
			t.Errorf("gid %q mode %q decided_at %v, want %q saga and a decision time", tx.GID, tx.Mode, tx.DecidedAt, gid)
		}
		calls := p.received()
		if got := paths(calls); strings.Join(got, " ") != "/b1/action /b2/action /b3/action" {
			t.Fatalf("calls %v, want the three actions in order and nothing else", got)
		}
		for i, cl := range calls {
			id := fmt.Sprint(i + 1)
			if cl.Method != http.MethodPost || cl.gid() != gid || cl.branch() != id || cl.op() != "action" || cl.mode() != "saga" {
				t.Errorf("call %d: %s gid=%q branch=%q op=%q mode=%q, want POST %s %s action saga", i, cl.Method, cl.gid(), cl.branch(), cl.op(), cl.mode(), gid, id)
			}
			if ct := cl.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("call %d: Content-Type %q", i, ct)
			}
			if cl.Body != payloads[i] {
				t.Errorf("call %d: body %q, want %q verbatim", i, cl.Body, payloads[i])
			}
			if i > 0 && cl.Seq < calls[i-1].Done {
				t.Errorf("branch %s started before branch %d returned", id, i)
			}
			b := branchOf(t, tx, id)
			if b.ForwardStatus != "done" || b.BackwardStatus != "idle" || b.PayloadBytes != int64(len(payloads[i])) {
				t.Errorf("branch %s: forward %s backward %s payload_bytes %d", id, b.ForwardStatus, b.BackwardStatus, b.PayloadBytes)
			}
			if len(b.Attempts) != 1 || b.Attempts[0].Outcome != "success" || b.Attempts[0].Op != "action" {
				t.Errorf("branch %s attempts %v, want one successful action", id, b.Attempts)
			}
		}
	})

	t.Run("rejection compensates the branches before it", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		p.on("/b2/action", fixed(http.StatusConflict, "out of stock: sku-7"))
		gid := newGID("reject")
		tx, err := c.NewSaga(gid).
			Add(p.url("/b1/action"), p.url("/b1/compensate"), `{"b":1}`).
			Add(p.url("/b2/action"), p.url("/b2/compensate"), `{"b":2}`).
			Add(p.url("/b3/action"), p.url("/b3/compensate"), `{"b":3}`).
			SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusAborted)
		if !strings.Contains(tx.Reason, "branch 2") || !strings.Contains(tx.Reason, "out of stock") {
			t.Errorf("reason %q should name branch 2 and its answer", tx.Reason)
		}
		if got := strings.Join(paths(p.received()), " "); got != "/b1/action /b2/action /b1/compensate" {
			t.Fatalf("calls %q, want /b1/action /b2/action /b1/compensate", got)
		}
		comp := p.only(t, "/b1/compensate")
		if comp.op() != "compensate" || comp.branch() != "1" || comp.gid() != gid || comp.Body != `{"b":1}` {
			t.Errorf("compensation call op=%q branch=%q gid=%q body=%q", comp.op(), comp.branch(), comp.gid(), comp.Body)
		}
		for id, want := range map[string][2]string{"1": {"done", "done"}, "2": {"rejected", "skipped"}, "3": {"idle", "skipped"}} {
			b := branchOf(t, tx, id)
			if b.ForwardStatus != want[0] || b.BackwardStatus != want[1] {
				t.Errorf("branch %s: %s/%s, want %s/%s", id, b.ForwardStatus, b.BackwardStatus, want[0], want[1])
			}
		}
	})

	t.Run("concurrent DAG", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		// b and c each wait for the other to arrive: they succeed only if
		// the coordinator really runs them at the same time.
		var arrived atomic.Int32
		both := make(chan struct{})
		var once sync.Once
		meet := func(r *http.Request) (int, string) {
			if arrived.Add(1) == 2 {
				once.Do(func() { close(both) })
			}
			select {
			case <-both:
				return http.StatusOK, "SUCCESS"
			case <-time.After(10 * time.Second):
				return http.StatusInternalServerError, "the other branch never arrived"
			case <-r.Context().Done():
				return http.StatusInternalServerError, "request ended"
			}
		}
		p.on("/b/action", meet)
		p.on("/c/action", meet)
		gid := newGID("dag")
		tx, err := c.NewSaga(gid).Concurrent().WithOptions(client.Options{MaxAttempts: 1}).
			AddBranch(client.Branch{ID: "a", Action: p.url("/a/action"), Compensate: p.url("/a/compensate")}).
			AddBranch(client.Branch{ID: "b", Action: p.url("/b/action"), Compensate: p.url("/b/compensate"), After: []string{"a"}}).
			AddBranch(client.Branch{ID: "c", Action: p.url("/c/action"), Compensate: p.url("/c/compensate"), After: []string{"a"}}).
			SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusSucceeded)
		a, b, cc := p.only(t, "/a/action"), p.only(t, "/b/action"), p.only(t, "/c/action")
		if b.Seq < a.Done || cc.Seq < a.Done {
			t.Errorf("a ran %d..%d, b started at %d, c at %d: b and c must start after a returned", a.Seq, a.Done, b.Seq, cc.Seq)
		}
		if b.Seq > cc.Done || cc.Seq > b.Done {
			t.Errorf("b ran %d..%d and c %d..%d: they did not overlap", b.Seq, b.Done, cc.Seq, cc.Done)
		}
		if got := branchOf(t, tx, "b").After; len(got) != 1 || got[0] != "a" {
			t.Errorf("branch b after %v, want [a]", got)
		}
		if !tx.Concurrent {
			t.Error("transaction not marked concurrent")
		}
	})

	t.Run("submit without waiting, then Wait", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		slow, release := hold(t)
		p.on("/slow/action", slow)
		gid := newGID("nowait")
		tx, err := c.NewSaga(gid).Add(p.url("/slow/action"), p.url("/slow/compensate"), "x").Submit(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusRunning)
		eventually(t, 30*time.Second, "the action call", func() bool { return p.count("/slow/action") == 1 })
		cur, err := c.Get(t.Context(), gid)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, cur, client.StatusRunning)
		if fs := cur.Branches[0].ForwardStatus; fs != "inflight" {
			t.Errorf("forward status %q while the action runs, want inflight", fs)
		}
		// A bounded wait on an unfinished transaction returns its
		// current state, not an error.
		var waited txReply
		post(t, srv.URL, "GetTransaction", fmt.Sprintf(`{"gid":%q,"wait":true,"wait_timeout_ms":50}`, gid)).decode(t, &waited)
		if waited.Transaction.Status != client.StatusRunning {
			t.Errorf("GetTransaction wait_timeout_ms=50 on a running saga: status %q", waited.Transaction.Status)
		}
		release()
		wantStatus(t, wait(t, c, gid), client.StatusSucceeded)
	})

	t.Run("server-minted gid", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		tx, err := c.NewSaga("").Add(p.url("/a"), p.url("/a/undo"), nil).SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusSucceeded)
		if !regexp.MustCompile(`^[A-Za-z0-9._:-]{8,128}$`).MatchString(tx.GID) {
			t.Fatalf("minted gid %q", tx.GID)
		}
		if got := p.only(t, "/a").gid(); got != tx.GID {
			t.Errorf("participant saw gid %q, transaction is %q", got, tx.GID)
		}
		g1, err1 := c.NewGID(t.Context())
		g2, err2 := c.NewGID(t.Context())
		if err1 != nil || err2 != nil || g1 == g2 || g1 == "" {
			t.Errorf("NewGID twice: %q %v, %q %v", g1, err1, g2, err2)
		}
	})

	t.Run("idempotent resubmission", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("idem")
		saga := func() *client.Saga {
			return c.NewSaga(gid).
				Add(p.url("/b1/action"), p.url("/b1/compensate"), `{"n":1}`).
				Add(p.url("/b2/action"), p.url("/b2/compensate"), `{"n":2}`)
		}
		// Several clients submit the same saga at once, then once more
		// after it finished: one transaction, each action run once.
		const n = 4
		txs := make([]*client.Transaction, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { txs[i], errs[i] = saga().SubmitAndWait(t.Context()) })
		}
		wg.Wait()
		again, err := saga().SubmitAndWait(t.Context())
		txs, errs = append(txs, again), append(errs, err)
		for i := range txs {
			if errs[i] != nil {
				t.Fatalf("submission %d: %v", i, errs[i])
			}
			wantStatus(t, txs[i], client.StatusSucceeded)
			if txs[i].GID != gid || !txs[i].CreatedAt.Equal(txs[0].CreatedAt) {
				t.Errorf("submission %d: gid %q created %v, want %q created %v", i, txs[i].GID, txs[i].CreatedAt, gid, txs[0].CreatedAt)
			}
		}
		for _, path := range []string{"/b1/action", "/b2/action"} {
			if got := p.count(path); got != 1 {
				t.Errorf("%s called %d times, want 1", path, got)
			}
		}
		list, _, err := c.List(t.Context(), client.ListOptions{GIDPrefix: gid})
		if err != nil || len(list) != 1 {
			t.Errorf("list under %s: %d transactions, err %v; want 1", gid, len(list), err)
		}
	})

	t.Run("different saga under a used gid", func(t *testing.T) {
		t.Parallel()
		p := newRecorder(t)
		gid := newGID("conflict")
		first, err := c.NewSaga(gid).Add(p.url("/a"), p.url("/a/undo"), `{"qty":1}`).SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.NewSaga(gid).Add(p.url("/a"), p.url("/a/undo"), `{"qty":2}`).Submit(t.Context())
		if !errors.Is(err, client.ErrConflict) {
			t.Fatalf("different payload under %s: err %v, want ErrConflict", gid, err)
		}
		body := fmt.Sprintf(`{"gid":%q,"branches":[{"action":%q,"compensate":%q,"payload":"other"}]}`, gid, p.url("/b"), p.url("/b/undo"))
		r := post(t, srv.URL, "SubmitSaga", body)
		if r.status != http.StatusConflict || r.code != "already_exists" || !strings.Contains(r.message, gid) {
			t.Errorf("raw resubmission: HTTP %d %s %q, want 409 already_exists naming the gid", r.status, r.code, r.message)
		}
		r = post(t, srv.URL, "BeginTCC", fmt.Sprintf(`{"gid":%q}`, gid))
		if r.status != http.StatusConflict || r.code != "already_exists" {
			t.Errorf("BeginTCC under a saga's gid: HTTP %d %s %q, want 409 already_exists", r.status, r.code, r.message)
		}
		now, err := c.Get(t.Context(), gid)
		if err != nil {
			t.Fatal(err)
		}
		if !now.UpdatedAt.Equal(first.UpdatedAt) || now.Branches[0].PayloadBytes != int64(len(`{"qty":1}`)) {
			t.Errorf("the original transaction changed: %v", now)
		}
		if got := strings.Join(paths(p.received()), " "); got != "/a" {
			t.Errorf("participant calls %q, want only the first saga's action", got)
		}
	})
}
