package demo

import (
	"bytes"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/twophase"
)

// TestTwoPCServices calls a service's 2PC URL directly, the way a confused
// network would: an abort before its prepare, a repeated prepare, a commit
// of a branch that never prepared.
func TestTwoPCServices(t *testing.T) {
	sh, err := openShop(t.Context(), t.TempDir(), &console{w: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sh.close)
	body := `{"order":7,"user":"B","sku":"T-shirt","qty":3,"amount":45}`
	call := func(s *service, op participant.Op, gid string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+pathTwoPC, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		participant.Branch{GID: gid, BranchID: s.name, Op: op, Mode: "2pc"}.SetHeaders(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	stock := func() string {
		t.Helper()
		tb, err := sh.inventory.snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(tb.Rows, "; ")
	}

	if code := call(sh.inventory, participant.OpAbort, "g1"); code != http.StatusOK {
		t.Errorf("null abort: HTTP %d, want 200", code)
	}
	if code := call(sh.inventory, participant.OpPrepare, "g1"); code != http.StatusConflict {
		t.Errorf("prepare after abort: HTTP %d, want 409", code)
	}
	if code := call(sh.inventory, participant.OpCommit, "g0"); code != http.StatusInternalServerError {
		t.Errorf("commit never prepared: HTTP %d, want 500", code)
	}
	if got, want := stock(), "sku=T-shirt qty=10 reserved=0"; got != want {
		t.Errorf("stock = %s, want %s", got, want)
	}
	for range 2 {
		if code := call(sh.inventory, participant.OpPrepare, "g2"); code != http.StatusOK {
			t.Errorf("prepare: HTTP %d, want 200", code)
		}
	}
	if got, want := stock(), "sku=T-shirt qty=7 reserved=3"; got != want {
		t.Errorf("after prepare: stock = %s, want %s", got, want)
	}
	for range 2 {
		if code := call(sh.inventory, participant.OpCommit, "g2"); code != http.StatusOK {
			t.Errorf("commit: HTTP %d, want 200", code)
		}
	}
	if got, want := stock(), "sku=T-shirt qty=7 reserved=0"; got != want {
		t.Errorf("after commit: stock = %s, want %s", got, want)
	}
}

// TestAskDecision: a branch prepared for a transaction the coordinator
// never decided to commit is released by asking it (presumed abort).
func TestAskDecision(t *testing.T) {
	dir := t.TempDir()
	url, stop, err := startCoordinator(t.Context(), filepath.Join(dir, "coordinator"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	var out bytes.Buffer
	sh, err := openShop(t.Context(), filepath.Join(dir, "shop"), &console{w: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sh.close)
	fn := sh.order.handleTwoPC()
	b := participant.Branch{GID: "unknown-gid", BranchID: "order", Op: participant.OpPrepare, Mode: "2pc"}
	if err := fn(t.Context(), b, []byte(`{"order":9,"user":"A","sku":"T-shirt","qty":1,"amount":15}`)); err != nil {
		t.Fatal(err)
	}
	if p, err := sh.order.tp.Pending(t.Context()); err != nil || len(p) != 1 {
		t.Fatalf("Pending = %v, %v; want the prepared branch", p, err)
	}
	if err := sh.order.askDecision(t.Context(), client.New(url), "unknown-gid", twophase.StatePrepared); err != nil {
		t.Fatal(err)
	}
	if p, err := sh.order.tp.Pending(t.Context()); err != nil || len(p) != 0 {
		t.Errorf("Pending after the decision = %v, %v; want none", p, err)
	}
	tb, err := sh.order.snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(tb.Rows) != 0 {
		t.Errorf("orders = %v, want none", tb.Rows)
	}
	if !strings.Contains(out.String(), "asks the coordinator → abort") {
		t.Errorf("output lacks the question:\n%s", out.String())
	}
}
