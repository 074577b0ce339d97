package crash

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/failpoint"
	"github.com/concordtm/concord/participant"
)

// twoBanks returns two banks with three funded accounts each.
func twoBanks(t *testing.T) (east, west *bank) {
	t.Helper()
	accounts := map[string]int64{"alice": 1000, "bob": 1000, "carol": 1000}
	return newBank(t, "east", accounts), newBank(t, "west", accounts)
}

// submitUntilCrash submits s to a coordinator that is about to kill
// itself. The answer may or may not arrive before the crash; an error is
// only acceptable if the process did die.
func submitUntilCrash(t *testing.T, c *coord, s sagaSpec) {
	t.Helper()
	if _, err := s.build(c.Client).Submit(t.Context()); err != nil {
		select {
		case <-c.Srv.Exited():
			t.Logf("submit %s: %v (the coordinator died before answering)", s.gid, err)
		case <-time.After(settleTimeout):
			t.Fatalf("submit %s failed while the coordinator kept running: %v", s.gid, err)
		}
	}
}

// TestCrashPoints kills the coordinator at each named failpoint and checks,
// after a restart without the failpoint and without any new submission,
// that recovery finishes the transaction with the right outcome and that
// every participant operation took effect exactly as often as it should.
func TestCrashPoints(t *testing.T) {
	t.Run(failpoint.AfterAccept, func(t *testing.T) {
		t.Parallel()
		east, west := twoBanks(t)
		s := sagaSpec{gid: "after-accept", legs: []leg{
			{east, transfer{Account: "alice", Amount: 100}},
			{west, transfer{Account: "bob", Amount: 200}},
		}}
		c := startCoord(t, t.TempDir(), failpoint.AfterAccept)
		if tx, err := s.build(c.Client).Submit(t.Context()); err == nil {
			t.Fatalf("submit acknowledged by a coordinator that died before answering: %s", describeTx(tx))
		}
		c.ExpectCrash(failpoint.AfterAccept)
		if n := east.TotalDelivered() + west.TotalDelivered(); n != 0 {
			t.Fatalf("%d branch calls before the crash; the crash point comes before the first", n)
		}

		c = c.Restart()
		tx := waitSettled(t, c.Client, s.gid)
		if tx.Status != client.StatusSucceeded {
			t.Fatalf("after restart: %s, want succeeded", describeTx(tx))
		}
		l := readLedger(t, east, west)
		expectApplied(t, l, s, [][2]int{{1, 0}, {1, 0}})
		east.CheckMoney(t, []transfer{s.legs[0].tr})
		west.CheckMoney(t, []transfer{s.legs[1].tr})

		// The client, told nothing, resubmits: it gets the finished saga
		// back, and nothing runs again.
		tx, err := s.build(c.Client).Submit(t.Context())
		if err != nil {
			t.Fatalf("resubmit: %v", err)
		}
		if tx.Status != client.StatusSucceeded {
			t.Errorf("resubmit returned %s, want the succeeded saga", describeTx(tx))
		}
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 0}, {1, 0}})
	})

	t.Run(failpoint.BetweenBranches, func(t *testing.T) {
		t.Parallel()
		east, west := twoBanks(t)
		s := sagaSpec{gid: "between-branches", legs: []leg{
			{east, transfer{Account: "alice", Amount: 100}},
			{west, transfer{Account: "bob", Amount: 50}},
			{east, transfer{Account: "carol", Amount: 70}},
		}}
		c := startCoord(t, t.TempDir(), failpoint.BetweenBranches)
		submitUntilCrash(t, c, s)
		c.ExpectCrash(failpoint.BetweenBranches)
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 0}, {0, 0}, {0, 0}})
		if n := west.TotalDelivered(); n != 0 {
			t.Fatalf("branch 2 was called %d times before the crash", n)
		}

		c = c.Restart()
		tx := waitSettled(t, c.Client, s.gid)
		if tx.Status != client.StatusSucceeded {
			t.Fatalf("after restart: %s, want succeeded", describeTx(tx))
		}
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 0}, {1, 0}, {1, 0}})
		// Branch 1's success was not written on its own (a saga defers it
		// to the next write): the restart calls the action again and the
		// barrier absorbs the repeat (applied once, above).
		if n := east.Delivered(opKey{s.gid, "1", participant.OpAction}); n != 2 {
			t.Errorf("branch 1's action was called %d times; want 2: once before the crash, once after (its result was not written)", n)
		}
		east.CheckMoney(t, []transfer{s.legs[0].tr, s.legs[2].tr})
		west.CheckMoney(t, []transfer{s.legs[1].tr})
	})

	t.Run(failpoint.AfterDecision, func(t *testing.T) {
		t.Parallel()
		east, west := twoBanks(t)
		s := sagaSpec{gid: "after-decision", legs: []leg{
			{east, transfer{Account: "alice", Amount: 100}},
			{west, transfer{Account: "bob", Amount: 50, Reject: true}},
			{east, transfer{Account: "carol", Amount: 70}},
		}}
		c := startCoord(t, t.TempDir(), failpoint.AfterDecision)
		submitUntilCrash(t, c, s)
		c.ExpectCrash(failpoint.AfterDecision)
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 0}, {0, 0}, {0, 0}})
		if n := east.Delivered(opKey{s.gid, "1", participant.OpCompensate}); n != 0 {
			t.Fatalf("branch 1 was compensated %d times before the crash; the decision was not even told", n)
		}

		c = c.Restart()
		tx := waitSettled(t, c.Client, s.gid)
		if tx.Status != client.StatusAborted {
			t.Fatalf("after restart: %s, want aborted", describeTx(tx))
		}
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 1}, {0, 0}, {0, 0}})
		if n := east.Delivered(opKey{s.gid, "3", participant.OpAction}); n != 0 {
			t.Errorf("branch 3's action was called %d times after the abort decision", n)
		}
		east.CheckNet(t)
		west.CheckNet(t)
	})

	t.Run(failpoint.DuringCompensation, func(t *testing.T) {
		t.Parallel()
		east, west := twoBanks(t)
		s := sagaSpec{gid: "during-compensation", legs: []leg{
			{east, transfer{Account: "alice", Amount: 100}},
			{west, transfer{Account: "bob", Amount: 50}},
			{east, transfer{Account: "carol", Amount: 70, Reject: true}},
		}}
		c := startCoord(t, t.TempDir(), failpoint.DuringCompensation)
		submitUntilCrash(t, c, s)
		c.ExpectCrash(failpoint.DuringCompensation)
		// Compensations run in reverse order: branch 2 first.
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 0}, {1, 1}, {0, 0}})

		c = c.Restart()
		tx := waitSettled(t, c.Client, s.gid)
		if tx.Status != client.StatusAborted {
			t.Fatalf("after restart: %s, want aborted", describeTx(tx))
		}
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 1}, {1, 1}, {0, 0}})
		if n := west.Delivered(opKey{s.gid, "2", participant.OpCompensate}); n != 1 {
			t.Errorf("branch 2 was compensated %d times; its compensation was durable before the crash", n)
		}
		east.CheckNet(t)
		west.CheckNet(t)
	})

	t.Run(failpoint.BeforeCommitSync, func(t *testing.T) {
		t.Parallel()
		east, west := twoBanks(t)
		s := sagaSpec{gid: "before-commit-sync", legs: []leg{
			{east, transfer{Account: "alice", Amount: 100}},
			{west, transfer{Account: "bob", Amount: 50}},
		}}
		// The first batch is the submission itself.
		c := startCoord(t, t.TempDir(), failpoint.BeforeCommitSync)
		if tx, err := s.build(c.Client).Submit(t.Context()); err == nil {
			t.Fatalf("submit acknowledged although its write never reached the disk: %s", describeTx(tx))
		}
		c.ExpectCrash(failpoint.BeforeCommitSync)
		if n := east.TotalDelivered() + west.TotalDelivered(); n != 0 {
			t.Fatalf("%d branch calls for a saga that was never durable", n)
		}

		c = c.Restart()
		tx, err := c.Client.Get(t.Context(), s.gid)
		switch {
		case isNotFound(err):
			// Not acknowledged and not durable: it must have left no trace.
			if n := east.TotalDelivered() + west.TotalDelivered(); n != 0 {
				t.Fatalf("unknown saga, yet %d branch calls", n)
			}
			expectApplied(t, readLedger(t, east, west), s, [][2]int{{0, 0}, {0, 0}})
		case err == nil:
			// Durable after all: then it must run to a consistent end.
			t.Logf("the unacknowledged submission survived: %s", describeTx(tx))
			tx = waitSettled(t, c.Client, s.gid)
			checkOutcome(t, readLedger(t, east, west), s, tx)
		default:
			t.Fatalf("get %s: %v", s.gid, err)
		}

		// The client retries the same saga; now it is acknowledged and runs
		// exactly once.
		if _, err := s.build(c.Client).Submit(t.Context()); err != nil {
			t.Fatalf("resubmit: %v", err)
		}
		tx = waitSettled(t, c.Client, s.gid)
		if tx.Status != client.StatusSucceeded {
			t.Fatalf("resubmitted saga: %s, want succeeded", describeTx(tx))
		}
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 0}, {1, 0}})
		east.CheckMoney(t, []transfer{s.legs[0].tr})
		west.CheckMoney(t, []transfer{s.legs[1].tr})
	})

	// The second batch is the saga's outcome (branch results are deferred
	// to it): both banks applied their actions, the coordinator dies
	// before recording anything of it. After the restart both actions
	// are called again and the barriers absorb the repeats.
	t.Run(failpoint.BeforeCommitSync+"@2", func(t *testing.T) {
		t.Parallel()
		east, west := twoBanks(t)
		s := sagaSpec{gid: "lost-result", legs: []leg{
			{east, transfer{Account: "alice", Amount: 100}},
			{west, transfer{Account: "bob", Amount: 50}},
		}}
		c := startCoord(t, t.TempDir(), failpoint.BeforeCommitSync+"@2")
		submitUntilCrash(t, c, s)
		c.ExpectCrash(failpoint.BeforeCommitSync)
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 0}, {1, 0}})

		c = c.Restart()
		tx := waitSettled(t, c.Client, s.gid)
		if tx.Status != client.StatusSucceeded {
			t.Fatalf("after restart: %s, want succeeded", describeTx(tx))
		}
		expectApplied(t, readLedger(t, east, west), s, [][2]int{{1, 0}, {1, 0}})
		for i, b := range []*bank{east, west} {
			id := fmt.Sprint(i + 1)
			if n := b.Delivered(opKey{s.gid, id, participant.OpAction}); n < 2 {
				t.Errorf("branch %s's action was called %d times; its result was lost, so it must be called again", id, n)
			}
		}
		east.CheckMoney(t, []transfer{s.legs[0].tr})
		west.CheckMoney(t, []transfer{s.legs[1].tr})
	})

	t.Run("tcc-"+failpoint.AfterDecision, func(t *testing.T) {
		t.Parallel()
		east, west := twoBanks(t)
		const gid = "tcc-after-decision"
		legs := []leg{
			{east, transfer{Account: "alice", Amount: 100}},
			{west, transfer{Account: "bob", Amount: 50}},
			{east, transfer{Account: "carol", Amount: 70}},
		}
		c := startCoord(t, t.TempDir(), failpoint.AfterDecision)
		tx, err := c.Client.RunTCC(t.Context(), gid, client.Options{}, func(ctx context.Context, tcc *client.TCC) error {
			for i, l := range legs {
				if _, err := tcc.CallBranch(ctx, branchID(i), l.tr, l.bank.Try(), l.bank.Confirm(), l.bank.Cancel()); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			t.Fatalf("commit acknowledged by a coordinator that died before answering: %s", describeTx(tx))
		}
		if errors.Is(err, client.ErrTryRejected) || errors.Is(err, client.ErrTryUnknown) {
			t.Fatalf("a try failed: %v", err)
		}
		c.ExpectCrash(failpoint.AfterDecision)
		l := readLedger(t, east, west)
		for i, lg := range legs {
			try, confirm := l.count(gid, i, lg, participant.OpTry), l.count(gid, i, lg, participant.OpConfirm)
			if try != 1 || confirm != 0 {
				t.Fatalf("before restart, branch %s: %d tries, %d confirms; want 1 and 0", branchID(i), try, confirm)
			}
		}

		c = c.Restart()
		tx = waitSettled(t, c.Client, gid)
		if tx.Status != client.StatusSucceeded {
			t.Fatalf("after restart: %s, want succeeded", describeTx(tx))
		}
		l = readLedger(t, east, west)
		for i, lg := range legs {
			try := l.count(gid, i, lg, participant.OpTry)
			confirm := l.count(gid, i, lg, participant.OpConfirm)
			cancel := l.count(gid, i, lg, participant.OpCancel)
			if try != 1 || confirm != 1 || cancel != 0 {
				t.Errorf("branch %s: %d tries, %d confirms, %d cancels; want 1, 1, 0", branchID(i), try, confirm, cancel)
			}
		}
		east.CheckMoney(t, []transfer{legs[0].tr, legs[2].tr})
		west.CheckMoney(t, []transfer{legs[1].tr})
	})

	// The initiator rolls back after three successful tries; the
	// coordinator dies after the first cancel. The cancels run in
	// parallel, so others may have reached the banks too: after the
	// restart every try must be cancelled exactly once, none confirmed.
	t.Run("tcc-"+failpoint.DuringCompensation, func(t *testing.T) {
		t.Parallel()
		east, west := twoBanks(t)
		const gid = "tcc-during-cancel"
		legs := []leg{
			{east, transfer{Account: "alice", Amount: 100}},
			{west, transfer{Account: "bob", Amount: 50}},
			{east, transfer{Account: "carol", Amount: 70}},
		}
		errChangedMind := errors.New("the initiator changed its mind")
		c := startCoord(t, t.TempDir(), failpoint.DuringCompensation)
		_, err := c.Client.RunTCC(t.Context(), gid, client.Options{}, func(ctx context.Context, tcc *client.TCC) error {
			for i, l := range legs {
				if _, err := tcc.CallBranch(ctx, branchID(i), l.tr, l.bank.Try(), l.bank.Confirm(), l.bank.Cancel()); err != nil {
					return err
				}
			}
			return errChangedMind
		})
		if !errors.Is(err, errChangedMind) {
			t.Fatalf("RunTCC: %v, want the body's error", err)
		}
		c.ExpectCrash(failpoint.DuringCompensation)
		l := readLedger(t, east, west)
		cancelled := 0
		for i, lg := range legs {
			cancelled += l.count(gid, i, lg, participant.OpCancel)
		}
		if cancelled < 1 {
			t.Fatalf("no cancel applied before the crash; the crash point comes after the first")
		}

		c = c.Restart()
		tx := waitSettled(t, c.Client, gid)
		if tx.Status != client.StatusAborted {
			t.Fatalf("after restart: %s, want aborted", describeTx(tx))
		}
		l = readLedger(t, east, west)
		for i, lg := range legs {
			try := l.count(gid, i, lg, participant.OpTry)
			confirm := l.count(gid, i, lg, participant.OpConfirm)
			cancel := l.count(gid, i, lg, participant.OpCancel)
			if try != 1 || confirm != 0 || cancel != 1 {
				t.Errorf("branch %s: %d tries, %d confirms, %d cancels; want 1, 0, 1", branchID(i), try, confirm, cancel)
			}
		}
		east.CheckNet(t)
		west.CheckNet(t)
	})

	// kill -9 from outside while branch calls are in flight; the banks
	// apply those calls after the coordinator is gone. After the restart
	// nobody submits, retries or aborts anything: recovery alone must
	// finish every saga, and the repeated calls must be absorbed.
	t.Run("recovery-without-traffic", func(t *testing.T) {
		t.Parallel()
		east, west := twoBanks(t)
		sagas := []sagaSpec{
			{gid: "quiet-1", legs: []leg{
				{east, transfer{Account: "alice", Amount: 10}},
				{west, transfer{Account: "alice", Amount: 20}},
				{east, transfer{Account: "bob", Amount: 30}},
			}},
			{gid: "quiet-2", legs: []leg{
				{west, transfer{Account: "bob", Amount: 40}},
				{east, transfer{Account: "carol", Amount: 50, Reject: true}},
				{west, transfer{Account: "carol", Amount: 60}},
			}},
			{gid: "quiet-3", legs: []leg{
				{east, transfer{Account: "carol", Amount: 70}},
				{west, transfer{Account: "carol", Amount: 80}},
			}},
			{gid: "quiet-4", legs: []leg{
				{west, transfer{Account: "alice", Amount: 90}},
				{east, transfer{Account: "alice", Amount: 5}},
				{west, transfer{Account: "bob", Amount: 2000}}, // insufficient funds
			}},
		}
		want := []string{client.StatusSucceeded, client.StatusAborted, client.StatusSucceeded, client.StatusAborted}

		arrived := make(chan opKey, 64)
		east.Hold(arrived)
		west.Hold(arrived)
		c := startCoord(t, t.TempDir(), "")
		for _, s := range sagas {
			if _, err := s.build(c.Client).Submit(t.Context()); err != nil {
				t.Fatalf("submit %s: %v", s.gid, err)
			}
		}
		timeout := time.After(settleTimeout)
		for range sagas {
			select {
			case k := <-arrived:
				if k.Branch != "1" || k.Op != participant.OpAction {
					t.Fatalf("unexpected call %s while branch 1 of every saga is held", k)
				}
			case <-timeout:
				t.Fatal("the first branch calls never arrived")
			}
		}
		c.Srv.Kill()
		east.Release()
		west.Release()
		l := readLedger(t, east, west)
		for _, s := range sagas {
			if n := l.count(s.gid, 0, s.legs[0], participant.OpAction); n != 1 {
				t.Fatalf("%s: held action applied %d times, want 1", s.gid, n)
			}
		}

		c = c.Restart()
		var settled []leg
		for i, s := range sagas {
			tx := waitSettled(t, c.Client, s.gid)
			if tx.Status != want[i] {
				t.Errorf("%s: %s, want %s", s.gid, describeTx(tx), want[i])
			}
			settled = append(settled, checkOutcome(t, readLedger(t, east, west), s, tx)...)
			first := opKey{s.gid, "1", participant.OpAction}
			if n := s.legs[0].bank.Delivered(first); n < 2 {
				t.Errorf("%s: branch 1's action was called %d times; its answer was lost, so it must be called again", s.gid, n)
			}
		}
		east.CheckMoney(t, transfersAt(east, settled))
		west.CheckMoney(t, transfersAt(west, settled))
	})
}
