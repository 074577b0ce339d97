package crash

import (
	"strings"
	"testing"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/failpoint"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// TestReleaseBuildIgnoresFailpoints: the binary built as a release is
// (without the failpoints build tag) has no crash hook: with every named
// point armed for its first hit, a saga runs to its end and the process
// stays up.
func TestReleaseBuildIgnoresFailpoints(t *testing.T) {
	t.Parallel()
	east, west := twoBanks(t)
	s := sagaSpec{gid: "release-build", legs: []leg{
		{east, transfer{Account: "alice", Amount: 100}},
		{west, transfer{Account: "bob", Amount: 200}},
	}}
	all := strings.Join([]string{failpoint.AfterAccept, failpoint.BetweenBranches, failpoint.BeforeDecision,
		failpoint.AfterDecision, failpoint.DuringCompensation, failpoint.BeforeCommitSync}, ",")
	srv := proc.StartRelease(t, t.TempDir(), []string{"CONCORD_FAILPOINTS=" + all}, serverFlags...)
	c := client.New(srv.URL)
	if _, err := s.build(c).Submit(t.Context()); err != nil {
		t.Fatalf("submit: %v\nstderr:\n%s", err, srv.Stderr())
	}
	if tx := waitSettled(t, c, s.gid); tx.Status != client.StatusSucceeded {
		t.Fatalf("%s, want succeeded", describeTx(tx))
	}
	select {
	case <-srv.Exited():
		t.Fatalf("the release build exited:\n%s", srv.Stderr())
	default:
	}
	if strings.Contains(srv.Stderr(), "failpoint:") {
		t.Errorf("the release build logged a failpoint:\n%s", srv.Stderr())
	}
	expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 0}, {1, 0}})
}
