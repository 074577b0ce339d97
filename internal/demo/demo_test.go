package demo

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
)

func TestRunAllModes(t *testing.T) {
	var out bytes.Buffer
	rep, err := Run(t.Context(), Options{Mode: ModeAll, DataDir: t.TempDir(), Out: &out})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := modeNames(rep); !slices.Equal(got, []string{ModeSaga, ModeTCC, ModeTwoPC, ModeMsg}) {
		t.Fatalf("modes = %v, want [saga tcc 2pc msg]", got)
	}
	initial := map[string][]string{
		"orders":   nil,
		"stock":    {"sku=T-shirt qty=10 reserved=0"},
		"accounts": {"user=A balance=3000 frozen=0", "user=B balance=100 frozen=0"},
	}
	orderStatus := map[string]string{ModeSaga: "created", ModeTCC: "confirmed", ModeTwoPC: "committed"}
	for _, mr := range rep.Modes {
		if mr.Mode == ModeMsg {
			t.Run(mr.Mode, func(t *testing.T) { checkMsgMode(t, mr) })
			continue
		}
		t.Run(mr.Mode, func(t *testing.T) {
			wantTables(t, "initial", mr.Initial, initial)
			if len(mr.Purchases) != 2 {
				t.Fatalf("%d purchases, want 2", len(mr.Purchases))
			}
			ok, failed := mr.Purchases[0], mr.Purchases[1]

			if ok.User != "B" || ok.Qty != 2 || ok.Status != client.StatusSucceeded {
				t.Errorf("purchase 1: %s × %d → %s, want B × 2 → succeeded", ok.User, ok.Qty, ok.Status)
			}
			if failed.User != "A" || failed.Qty != 100 || failed.Status != client.StatusAborted {
				t.Errorf("purchase 2: %s × %d → %s, want A × 100 → aborted", failed.User, failed.Qty, failed.Status)
			}
			if failed.Reason == "" {
				t.Error("the aborted purchase has no reason")
			}

			// Stock down by B's 2 only, B charged once, A's order absent
			// and A's balance untouched; nothing left reserved or frozen.
			final := map[string][]string{
				"orders":   {"id=1 user=B sku=T-shirt qty=2 amount=30 status=" + orderStatus[mr.Mode]},
				"stock":    {"sku=T-shirt qty=8 reserved=0"},
				"accounts": {"user=A balance=3000 frozen=0", "user=B balance=70 frozen=0"},
			}
			wantTables(t, "after B's purchase", ok.After, final)
			wantTables(t, "after A's purchase", failed.After, final)

			if !ok.Before.Equal(mr.Initial) || !failed.Before.Equal(ok.After) {
				t.Error("each purchase's before-snapshot should be the previous state")
			}
			if ok.Unchanged() {
				t.Error("B's purchase changed nothing")
			}
			if !failed.Unchanged() {
				t.Errorf("A's failed purchase changed the shop:\n%s", strings.Join(failed.Before.Diff(failed.After), "\n"))
			}
		})
	}
	for _, want := range []string{
		"stock short: have 8, want 100",
		"nothing changed anywhere for the failed purchase",
		"[order]     compensate",
		"[order]     cancel",
		"[inventory] prepare     gid=2pc-A-",
		"votes NO: stock short: have 8, want 100",
		"decision ABORT",
		"decision COMMIT",
		"[order]     abort       gid=2pc-A-",
		"2pc   A buys 100 × T-shirt  →  aborted    changed nothing",
		"msg   A buys   4 × T-shirt  →  cancelled  left only its cancelled order",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestRunInvalidMode(t *testing.T) {
	_, err := Run(t.Context(), Options{Mode: "3pc", DataDir: t.TempDir()})
	if !errors.Is(err, ErrInvalidMode) {
		t.Fatalf("Run(mode 3pc) = %v, want ErrInvalidMode", err)
	}
}

func TestParseMode(t *testing.T) {
	all := []string{ModeSaga, ModeTCC, ModeTwoPC, ModeMsg}
	for mode, want := range map[string][]string{
		"": all, ModeAll: all, ModeBoth: all,
		ModeSaga: {ModeSaga}, ModeTCC: {ModeTCC}, ModeTwoPC: {ModeTwoPC}, ModeMsg: {ModeMsg},
	} {
		got, err := parseMode(mode)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseMode(%q) = %v, %v; want %v", mode, got, err, want)
		}
	}
}

// TestServicesUseTheBarrier calls a service directly, the way a confused
// network would: a compensation before its action (null compensation), the
// action arriving late (hanging), and a repeated action.
func TestServicesUseTheBarrier(t *testing.T) {
	sh, err := openShop(t.Context(), t.TempDir(), &console{w: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sh.close)
	body := `{"order":7,"user":"B","sku":"T-shirt","qty":1,"amount":15}`
	call := func(path string, op participant.Op, gid string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, sh.order.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		participant.Branch{GID: gid, BranchID: "order", Op: op, Mode: "saga"}.SetHeaders(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	orders := func() []string {
		t.Helper()
		tb, err := sh.order.snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return tb.Rows
	}

	if code := call("/saga/cancel", participant.OpCompensate, "g1"); code != http.StatusOK {
		t.Errorf("null compensation: HTTP %d, want 200", code)
	}
	if code := call("/saga/create", participant.OpAction, "g1"); code != http.StatusConflict {
		t.Errorf("hanging action: HTTP %d, want 409", code)
	}
	if rows := orders(); len(rows) != 0 {
		t.Errorf("hanging action created %v", rows)
	}

	for range 3 {
		if code := call("/saga/create", participant.OpAction, "g2"); code != http.StatusOK {
			t.Errorf("repeated action: HTTP %d, want 200", code)
		}
	}
	if rows := orders(); len(rows) != 1 {
		t.Errorf("repeated action left %v, want one order", rows)
	}
	for range 2 {
		if code := call("/saga/cancel", participant.OpCompensate, "g2"); code != http.StatusOK {
			t.Errorf("compensation: HTTP %d, want 200", code)
		}
	}
	if rows := orders(); len(rows) != 0 {
		t.Errorf("after compensation: %v, want no order", rows)
	}
}

func TestSnapshotDiff(t *testing.T) {
	a := Snapshot{{DB: "x.db", Name: "t", Rows: []string{"k=1 v=1", "k=2 v=2"}}}
	b := Snapshot{{DB: "x.db", Name: "t", Rows: []string{"k=1 v=1", "k=2 v=3"}}}
	if !a.Equal(a) || a.Equal(b) {
		t.Fatal("Equal is wrong")
	}
	want := []string{"- t         k=2 v=2", "+ t         k=2 v=3"}
	if got := a.Diff(b); !slices.Equal(got, want) {
		t.Errorf("Diff = %q, want %q", got, want)
	}
	if d := a.Diff(a); len(d) != 0 {
		t.Errorf("Diff of equal snapshots = %q", d)
	}
}

func modeNames(r Report) []string {
	var out []string
	for _, m := range r.Modes {
		out = append(out, m.Mode)
	}
	return out
}

// wantTables compares the named tables of s with want.
func wantTables(t *testing.T, when string, s Snapshot, want map[string][]string) {
	t.Helper()
	if len(s) != len(want) {
		t.Errorf("%s: %d tables, want %d", when, len(s), len(want))
	}
	for name, rows := range want {
		if got := s.Table(name); !slices.Equal(got, rows) {
			t.Errorf("%s: %s = %q, want %q", when, name, got, rows)
		}
	}
}
