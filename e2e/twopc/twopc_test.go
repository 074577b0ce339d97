package twopc

import (
	"context"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant/xa"
)

// submit runs a 2PC transaction in the background and returns the channel
// of its final state.
func submit(t *testing.T, tp *client.TwoPC) <-chan *client.Transaction {
	done := make(chan *client.Transaction, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
		defer cancel()
		tx, err := tp.SubmitAndWait(ctx)
		if err != nil {
			t.Errorf("submit %s: %v", tp.GID(), err)
		}
		done <- tx
	}()
	return done
}

// TestInventoryVotesNo is the seed's example: user A orders 100 T-shirts
// with 10 in stock. The order branch prepares (its row is written but
// invisible, and it holds the customer's row lock) while the inventory's
// prepare is held; then the inventory votes no and everything is undone.
func TestInventoryVotesNo(t *testing.T) {
	s := newShop(t)
	c := startCoord(t, t.TempDir(), "")
	held := s.inventory.holdPrepares()
	gid := s.newGID()
	done := submit(t, s.twoPC(c.Client, gid, 100))

	wait(t, held, settleTimeout, "the inventory's prepare")
	eventually(t, settleTimeout, "the order branch to prepare", func() bool { return len(s.order.prepared(gid)) == 1 })
	if s.orderVisible(gid) {
		t.Fatal("a concurrent reader sees the prepared order row")
	}
	if !s.customerLocked() {
		t.Fatal("the prepared order branch does not hold the customer's row lock")
	}
	if d := decision(t, c, gid); d != "pending" {
		t.Fatalf("decision while voting: %q, want pending", d)
	}
	s.inventory.release()

	tx := wait(t, done, settleTimeout, "the outcome")
	if tx.Status != client.StatusAborted {
		t.Fatalf("status %s (%s), want aborted", tx.Status, tx.Reason)
	}
	s.expectNothingPrepared(gid)
	s.expectUnchanged(gid, 0)
	if s.customerLocked() || s.stockLocked() {
		t.Fatal("a lock outlived the aborted transaction")
	}
	if d := decision(t, c, gid); d != "abort" {
		t.Fatalf("decision %q, want abort", d)
	}
}

// TestCommit orders 2 T-shirts: both branches commit.
func TestCommit(t *testing.T) {
	s := newShop(t)
	c := startCoord(t, t.TempDir(), "")
	gid := s.newGID()
	tx := wait(t, submit(t, s.twoPC(c.Client, gid, 2)), settleTimeout, "the outcome")
	if tx.Status != client.StatusSucceeded {
		t.Fatalf("status %s (%s), want succeeded", tx.Status, tx.Reason)
	}
	s.expectNothingPrepared(gid)
	if !s.orderVisible(gid) || s.stockLeft() != initialStock-2 || s.customerOrders() != 1 {
		t.Fatalf("after commit: order visible %v, stock %d, orders %d; want true, %d, 1",
			s.orderVisible(gid), s.stockLeft(), s.customerOrders(), initialStock-2)
	}
	if d := decision(t, c, gid); d != "commit" {
		t.Fatalf("decision %q, want commit", d)
	}
}

// TestKilledBeforeDecision kills the coordinator once every participant
// voted yes and before the decision is written: both branches stay
// prepared, holding their locks, until the restarted coordinator aborts
// the undecided transaction (presumed abort) and tells them.
func TestKilledBeforeDecision(t *testing.T) {
	s := newShop(t)
	c := startCoord(t, t.TempDir(), "before-decision")
	gid := s.newGID()
	go func() { // the answer dies with the process
		ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
		defer cancel()
		s.twoPC(c.Client, gid, 2).SubmitAndWait(ctx)
	}()
	c.ExpectCrash("before-decision")

	s.expectBothPrepared(gid)
	if s.orderVisible(gid) || s.stockLeft() != initialStock {
		t.Fatal("prepared changes are visible")
	}
	if !s.customerLocked() || !s.stockLocked() {
		t.Fatal("the prepared branches do not hold their locks")
	}
	blocked := s.blockedUpdate()
	select {
	case err := <-blocked:
		t.Fatalf("update of the locked stock row went through while prepared: %v", err)
	case <-time.After(100 * time.Millisecond):
	}

	c = c.Restart()
	tx := c.WaitSettled(gid)
	if tx.Status != client.StatusAborted {
		t.Fatalf("status %s after restart, want aborted", tx.Status)
	}
	s.expectNothingPrepared(gid)
	if err := wait(t, blocked, settleTimeout, "the blocked update"); err != nil {
		t.Fatalf("blocked update: %v", err)
	}
	s.expectUnchanged(gid, 0)
	if d := decision(t, c, gid); d != "abort" {
		t.Fatalf("decision %q, want abort", d)
	}
}

// TestKilledAfterDecision kills the coordinator once its commit decision
// is durable and before any participant heard it: the restarted
// coordinator finishes the commit on both.
func TestKilledAfterDecision(t *testing.T) {
	s := newShop(t)
	c := startCoord(t, t.TempDir(), "after-decision")
	gid := s.newGID()
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
		defer cancel()
		s.twoPC(c.Client, gid, 2).SubmitAndWait(ctx)
	}()
	c.ExpectCrash("after-decision")
	s.expectBothPrepared(gid)
	if s.orderVisible(gid) {
		t.Fatal("the order row is visible before the commit")
	}

	c = c.Restart()
	tx := c.WaitSettled(gid)
	if tx.Status != client.StatusSucceeded {
		t.Fatalf("status %s (%s) after restart, want succeeded", tx.Status, tx.Reason)
	}
	s.expectNothingPrepared(gid)
	if !s.orderVisible(gid) || s.stockLeft() != initialStock-2 || s.customerOrders() != 1 {
		t.Fatal("the commit did not finish on both databases")
	}
}

// TestParticipantDownAfterVote: the order service answers 503 to phase two
// after voting yes. The coordinator keeps resending the commit; once the
// service answers again the transaction succeeds.
func TestParticipantDownAfterVote(t *testing.T) {
	s := newShop(t)
	c := startCoord(t, t.TempDir(), "")
	s.order.phase2Down.Store(true)
	gid := s.newGID()
	tx, err := s.twoPC(c.Client, gid, 2).Submit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, settleTimeout, "3 refused commits", func() bool { return s.order.phase2Refuse.Load() >= 3 })
	if d := decision(t, c, gid); d != "commit" {
		t.Fatalf("decision %q, want commit", d)
	}
	eventually(t, settleTimeout, "the inventory to commit", func() bool { return len(s.inventory.prepared(gid)) == 0 })
	if len(s.order.prepared(gid)) != 1 || s.orderVisible(gid) {
		t.Fatal("the order branch should still be prepared and invisible")
	}
	s.order.phase2Down.Store(false)
	if tx = c.WaitSettled(tx.GID); tx.Status != client.StatusSucceeded {
		t.Fatalf("status %s (%s), want succeeded", tx.Status, tx.Reason)
	}
	s.expectNothingPrepared(gid)
	if !s.orderVisible(gid) || s.stockLeft() != initialStock-2 {
		t.Fatal("the commit did not finish on both databases")
	}
}

// TestResolverCommitsForDeadParticipant: the order service stays down
// after its yes vote; a Resolver on a fresh pool asks the coordinator and
// commits the branch (ask, never guess). The coordinator's own resend
// then finds the branch committed.
func TestResolverCommitsForDeadParticipant(t *testing.T) {
	s := newShop(t)
	c := startCoord(t, t.TempDir(), "")
	s.order.phase2Down.Store(true)
	gid := s.newGID()
	if _, err := s.twoPC(c.Client, gid, 2).Submit(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, settleTimeout, "a refused commit", func() bool { return s.order.phase2Refuse.Load() >= 1 })

	fresh := s.order.openFresh()
	defer fresh.Close()
	r := &xa.Resolver{
		DB: fresh, Dialect: xa.Postgres, Decide: c.Client.Decision,
		Match: func(p xa.Prepared) bool { return p.GID == gid },
	}
	ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
	defer cancel()
	rep, err := r.ResolveOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (xa.Report{Committed: 1}) {
		t.Fatalf("resolver report %+v, want one commit", rep)
	}
	if !s.orderVisible(gid) || len(s.order.prepared(gid)) != 0 {
		t.Fatal("the resolver did not commit the order branch")
	}
	s.order.phase2Down.Store(false)
	if tx := c.WaitSettled(gid); tx.Status != client.StatusSucceeded {
		t.Fatalf("status %s (%s), want succeeded", tx.Status, tx.Reason)
	}
	s.expectNothingPrepared(gid)
	if s.stockLeft() != initialStock-2 || s.customerOrders() != 1 {
		t.Fatal("the inventory did not commit")
	}
}
