package participant

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestMiddlewareBarrier: an existing net/http handler behind Middleware
// with a barrier on SQLite gets its branch and the barrier's transaction;
// its 2xx commits, its other answers roll back, a repeated delivery and a
// null compensation are answered done without it, a hanging action is
// refused with 409, and calls that are not branch calls pass through.
func TestMiddlewareBarrier(t *testing.T) {
	db := openSQLite(t)
	br, err := NewBarrier(db, SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE moves (gid TEXT, op TEXT)"); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int64
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		b, ok := FromContext(r.Context())
		if !ok {
			io.WriteString(w, "plain")
			return
		}
		tx, ok := TxFromContext(r.Context())
		if !ok {
			http.Error(w, "no tx", http.StatusInternalServerError)
			return
		}
		if _, err := tx.ExecContext(r.Context(), "INSERT INTO moves VALUES (?, ?)", b.GID, string(b.Op)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if r.URL.Query().Get("fail") != "" {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		WriteResult(w, nil)
	})
	srv := httptest.NewServer(Middleware(WithBarrier(br))(app))
	t.Cleanup(srv.Close)
	strict := httptest.NewServer(Middleware(RequireBranch())(app))
	t.Cleanup(strict.Close)

	call := func(base, query string, b *Branch) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/x"+query, strings.NewReader("{}"))
		if b != nil {
			b.SetHeaders(req.Header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	moves := func(gid string) int {
		var n int
		if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM moves WHERE gid = ?", gid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	action := func(gid string) *Branch { return &Branch{GID: gid, BranchID: "1", Op: OpAction, Mode: "saga"} }
	compensate := func(gid string) *Branch { return &Branch{GID: gid, BranchID: "1", Op: OpCompensate, Mode: "saga"} }

	if code, body := call(srv.URL, "", nil); code != 200 || body != "plain" {
		t.Errorf("plain call: %d %q, want it passed through", code, body)
	}
	if code, _ := call(strict.URL, "", nil); code != http.StatusBadRequest {
		t.Errorf("plain call with RequireBranch: %d, want 400", code)
	}
	if code, body := call(srv.URL, "?fail=1", action("g1")); code != http.StatusServiceUnavailable || body != "busy" || moves("g1") != 0 {
		t.Errorf("failing handler: %d %q, %d rows; want its 503 and nothing committed", code, body, moves("g1"))
	}
	before := runs.Load()
	for range 2 {
		if code, _ := call(srv.URL, "", action("g1")); code != 200 {
			t.Errorf("action: %d, want 200", code)
		}
	}
	if runs.Load()-before != 1 || moves("g1") != 1 {
		t.Errorf("action delivered twice ran %d times, %d rows; want once", runs.Load()-before, moves("g1"))
	}
	before = runs.Load()
	if code, _ := call(srv.URL, "", compensate("g2")); code != 200 || runs.Load() != before {
		t.Errorf("null compensation: %d, ran %d times; want 200 without the handler", code, runs.Load()-before)
	}
	if code, _ := call(srv.URL, "", action("g2")); code != http.StatusConflict || moves("g2") != 0 {
		t.Errorf("hanging action: %d, %d rows; want 409 and nothing", code, moves("g2"))
	}
}
