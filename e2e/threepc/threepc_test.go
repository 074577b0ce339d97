package threepc

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/testenv/proc"
	"github.com/concordtm/concord/participant/twophase"
)

func TestCommit(t *testing.T) {
	a, b := newAccount(t, "alice", 100), newAccount(t, "bob", 0)
	c := startCoord(t, t.TempDir(), "")
	tx, err := transfer(c.Client, "3pc-commit", a, b, 30).SubmitAndWait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tx.Mode != "3pc" || tx.Status != "succeeded" {
		t.Fatalf("%s %s (%s), want 3pc succeeded", tx.Mode, tx.Status, tx.Reason)
	}
	for _, br := range tx.Branches {
		if br.ForwardOp != "can-commit" || br.MidOp != "pre-commit" || br.MidStatus != "done" || br.BackwardOp != "do-commit" || br.BackwardStatus != "done" {
			t.Errorf("branch %s: %+v", br.ID, br)
		}
	}
	a.wantBalance(70, 0)
	b.wantBalance(30, 0)
	if a.state("3pc-commit") != twophase.StateCommitted || b.state("3pc-commit") != twophase.StateCommitted {
		t.Errorf("states %s, %s; want committed", a.state("3pc-commit"), b.state("3pc-commit"))
	}
	if d, err := c.Client.Decision(t.Context(), "3pc-commit"); err != nil || d != "commit" {
		t.Errorf("decision %q, %v; want commit", d, err)
	}
}

func TestNoAtCanCommit(t *testing.T) {
	a, b := newAccount(t, "alice", 100), newAccount(t, "bob", 0)
	b.no.Store(true)
	c := startCoord(t, t.TempDir(), "")
	tx, err := transfer(c.Client, "3pc-no", a, b, 30).SubmitAndWait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tx.Status != "aborted" || !strings.Contains(tx.Reason, "bob is frozen") {
		t.Fatalf("%s (%s), want aborted naming bob's no", tx.Status, tx.Reason)
	}
	for _, br := range tx.Branches {
		if br.MidStatus != "idle" {
			t.Errorf("branch %s: pre-commit %s, want idle (never sent)", br.ID, br.MidStatus)
		}
	}
	a.wantBalance(100, 0)
	b.wantBalance(0, 0)
	// Alice said yes and heard the abort: recorded, so a late pre-commit
	// is refused.
	eventually(t, settleTimeout, "alice records the abort", func() bool { return a.state("3pc-no") == twophase.StateAborted })
	if st := b.state("3pc-no"); st == twophase.StatePreCommitted || st == twophase.StateCommitted {
		t.Errorf("bob: %s after saying no", st)
	}
}

// killedAroundDecision kills the coordinator at point, shows each
// pre-committed participant committing on its own timeout while the
// coordinator is down, restarts it and checks that it finishes the
// transaction the same way.
func killedAroundDecision(t *testing.T, point string) {
	a, b := newAccount(t, "alice", 100), newAccount(t, "bob", 0)
	c := startCoord(t, t.TempDir(), point)
	gid := "3pc-" + point
	if _, err := transfer(c.Client, gid, a, b, 30).Submit(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.Srv.ExpectCrash(t, point, settleTimeout)
	if a.state(gid) != twophase.StatePreCommitted || b.state(gid) != twophase.StatePreCommitted {
		t.Fatalf("at the crash: %s, %s; want both precommitted", a.state(gid), b.state(gid))
	}
	a.wantBalance(100, -30)
	// The coordinator is down. No participant blocks: after its decision
	// timeout each commits on its own (the seeds' behaviour).
	eventually(t, settleTimeout, "both participants commit on their timeout", func() bool {
		return a.state(gid) == twophase.StateCommitted && b.state(gid) == twophase.StateCommitted
	})
	a.wantBalance(70, 0)
	b.wantBalance(30, 0)

	c = c.Restart()
	tx := c.WaitSettled(gid)
	if tx.Status != "succeeded" {
		t.Fatalf("after restart: %s (%s), want succeeded", tx.Status, tx.Reason)
	}
	a.wantBalance(70, 0) // applied once
	b.wantBalance(30, 0)
}

// After the commit decision is durable, before any do-commit.
func TestKilledAfterDecision(t *testing.T) { killedAroundDecision(t, "after-decision") }

// In the pre-commit phase: every participant acknowledged the pre-commit,
// the commit decision is taken but not written. The restarted coordinator
// resumes the pre-commit phase; the participants, committed meanwhile,
// acknowledge it again.
func TestKilledDuringPreCommit(t *testing.T) { killedAroundDecision(t, "before-decision") }

func TestBadInput(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	for _, tc := range []struct {
		name, body, want string
	}{
		{"no branches", `{"gid":"bad-1"}`, "a 3pc transaction needs at least one branch"},
		{"empty url", `{"branches":[{"id":"a","url":""}]}`, "branches[0].url"},
		{"not a url", `{"branches":[{"id":"a","url":"http://ok.example/x"},{"id":"b","url":"ftp://x/y"}]}`, "branches[1].url"},
		{"repeated id", `{"branches":[{"id":"a","url":"http://ok.example/x"},{"id":"a","url":"http://ok.example/y"}]}`, `duplicate branch id "a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/concord.v1.CoordinatorService/SubmitThreePC", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var e struct{ Code, Message string }
			json.Unmarshal(raw, &e)
			if resp.StatusCode != http.StatusBadRequest || e.Code != "invalid_argument" || !strings.Contains(e.Message, tc.want) {
				t.Errorf("HTTP %d %s, want 400 invalid_argument naming %q", resp.StatusCode, raw, tc.want)
			}
		})
	}
}
