package threepc

import (
	"testing"
	"time"

	"github.com/concordtm/concord/participant/twophase"
)

// preCommitOnlyAlice plays the seeds' story with the real binary: both
// accounts say yes, the coordinator pre-commits alice, and dies (kill -9)
// while bob's pre-commit is still on its way (held, never delivered).
func preCommitOnlyAlice(t *testing.T, termination bool) (c *coord, alice, bob *account, gid string) {
	t.Helper()
	alice, bob = openAccount(t, "alice", 100, termination), openAccount(t, "bob", 0, termination)
	bob.holdPreCommit.Store(true)
	c = startCoord(t, t.TempDir(), "")
	gid = "3pc-only-alice"
	if termination {
		gid += "-term"
	}
	if _, err := transfer(c.Client, gid, alice, bob, 30).Submit(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bob.held:
	case <-time.After(settleTimeout):
		t.Fatal("bob's pre-commit never came")
	}
	eventually(t, settleTimeout, "alice pre-commits", func() bool { return alice.state(gid) == twophase.StatePreCommitted })
	c.Srv.Kill()
	bob.holdPreCommit.Store(false)
	if st := bob.state(gid); st != twophase.StateNone {
		t.Fatalf("bob at the crash: %q, want only voted (no row)", st)
	}
	return c, alice, bob, gid
}

// Without the termination protocol (the default) the story diverges, as
// docs/protocols.md says: alice commits on her decision timeout, bob
// aborts on his vote timeout.
func TestCoordinatorDiesAfterOnePreCommit(t *testing.T) {
	c, alice, bob, gid := preCommitOnlyAlice(t, false)
	eventually(t, settleTimeout, "alice commits and bob aborts on their timeouts", func() bool {
		return alice.state(gid) == twophase.StateCommitted && bob.state(gid) == twophase.StateAborted
	})
	alice.wantBalance(70, 0)
	bob.wantBalance(0, 0) // 30 left alice and arrived nowhere
	// The restarted coordinator resumes the pre-commit phase, hears bob
	// refuse, and aborts: it reads "aborted" although alice committed.
	c = c.Restart()
	if tx := c.WaitSettled(gid); tx.Status != "aborted" {
		t.Fatalf("after restart: %s (%s), want aborted", tx.Status, tx.Reason)
	}
}

// With Skeen's termination protocol both end the same way: alice's
// decision timeout fires first (2s against bob's 3s vote timeout); she asks
// bob, who has only voted, so he aborts for good and says so, and she
// aborts too. The restarted coordinator agrees.
func TestCoordinatorDiesAfterOnePreCommitTermination(t *testing.T) {
	c, alice, bob, gid := preCommitOnlyAlice(t, true)
	eventually(t, settleTimeout, "both abort", func() bool {
		return alice.state(gid) == twophase.StateAborted && bob.state(gid) == twophase.StateAborted
	})
	alice.wantBalance(100, 0) // alice's hold undone
	bob.wantBalance(0, 0)
	c = c.Restart()
	if tx := c.WaitSettled(gid); tx.Status != "aborted" {
		t.Fatalf("after restart: %s (%s), want aborted", tx.Status, tx.Reason)
	}
	alice.wantBalance(100, 0)
	bob.wantBalance(0, 0)
}

// With the termination protocol on and every branch pre-committed, a
// coordinator crash still ends in commit: the peers answer precommitted.
func TestKilledAfterDecisionTermination(t *testing.T) {
	a, b := openAccount(t, "alice", 100, true), openAccount(t, "bob", 0, true)
	c := startCoord(t, t.TempDir(), "after-decision")
	gid := "3pc-after-decision-term"
	if _, err := transfer(c.Client, gid, a, b, 30).Submit(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.Srv.ExpectCrash(t, "after-decision", settleTimeout)
	eventually(t, settleTimeout, "both commit by asking each other", func() bool {
		return a.state(gid) == twophase.StateCommitted && b.state(gid) == twophase.StateCommitted
	})
	a.wantBalance(70, 0)
	b.wantBalance(30, 0)
	c = c.Restart()
	if tx := c.WaitSettled(gid); tx.Status != "succeeded" {
		t.Fatalf("after restart: %s (%s), want succeeded", tx.Status, tx.Reason)
	}
}
