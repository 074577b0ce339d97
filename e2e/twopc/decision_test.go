package twopc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/cli"
)

// statusUnknown stands for a gid the coordinator does not know: its
// submission never became durable (the coordinator died first).
const statusUnknown = "never accepted"

// checkDecisions lets coordinator c settle every gid of gids on its own
// (no Resolver ends anything for it) and checks, per gid, that each bank's
// ledger agrees with what c recorded:
//
//   - succeeded: the decision is "commit" and every bank applied the gid;
//   - aborted, or unknown to c: the decision is "abort" and no bank
//     applied it;
//   - no other final status (stuck, or not settled in time, fails);
//   - once all are settled, no branch whose gid starts with prefix is
//     left prepared in any database (XA RECOVER, pg_prepared_xacts);
//   - no bank applied a gid outside gids.
//
// It returns how many gids ended in each status. Each failure names the
// gid with the coordinator's record as `concord tx show` prints it.
func checkDecisions(t *testing.T, c *coord, prefix string, gids []string, banks []*bankDB) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
	defer cancel()
	final := make(map[string]*client.Transaction, len(gids))
	out := map[string]int{}
	for _, gid := range gids {
		tx, err := c.Client.Get(ctx, gid)
		if errors.Is(err, client.ErrNotFound) {
			out[statusUnknown]++
			continue
		}
		if err == nil && !client.Settled(tx) {
			tx, err = c.Client.Wait(ctx, gid)
		}
		if err != nil {
			t.Fatalf("%s did not settle within %v of the last restart: %v\n%s", gid, settleTimeout, err, show(tx))
		}
		final[gid] = tx
		out[tx.Status]++
	}
	t.Logf("coordinator's outcomes: %v", out)

	// Settled means every branch acknowledged phase two: nothing of the
	// test may stay prepared, and the coordinator must not need help.
	left := func() []string {
		var l []string
		for _, b := range banks {
			for _, p := range b.svc.prepared(prefix) {
				l = append(l, fmt.Sprintf("%s/%s on %s", p.GID, p.BranchID, b.svc.name))
			}
		}
		return l
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for l := left(); len(l) > 0; l = left() {
		if time.Now().After(deadline) {
			for _, p := range l {
				gid := strings.SplitN(p, "/", 2)[0]
				t.Errorf("prepared branch %s left behind after its transaction settled:\n%s", p, show(final[gid]))
			}
			break
		}
		<-tick.C
	}

	applied := make([]map[string]bool, len(banks))
	for i, b := range banks {
		applied[i] = b.applied(t)
	}
	for _, gid := range gids {
		tx := final[gid]
		status := statusUnknown
		if tx != nil {
			status = tx.Status
		}
		var on []string
		for i, b := range banks {
			if applied[i][gid] {
				on = append(on, b.svc.name)
			}
		}
		want, wantOn := "abort", 0
		switch status {
		case client.StatusSucceeded:
			want, wantOn = "commit", len(banks)
		case client.StatusAborted, statusUnknown:
		default:
			t.Errorf("%s ended %s, want succeeded or aborted:\n%s", gid, status, show(tx))
			continue
		}
		d, err := c.Client.Decision(ctx, gid)
		if err != nil {
			t.Fatalf("decision of %s: %v", gid, err)
		}
		if d != want || len(on) != wantOn {
			t.Errorf("%s: coordinator says %s with decision %q (want %q); applied on %v (want %d of %d databases)\n%s",
				gid, status, d, want, on, wantOn, len(banks), show(tx))
		}
	}
	for i, b := range banks {
		for gid := range applied[i] {
			if strings.HasPrefix(gid, prefix) && !slices.Contains(gids, gid) {
				t.Errorf("%s applied on %s but never submitted", gid, b.svc.name)
			}
		}
	}
	return out
}

// show renders tx as `concord tx show` prints it.
func show(tx *client.Transaction) string {
	if tx == nil {
		return "(no record at the coordinator)"
	}
	var b strings.Builder
	cli.PrintTransaction(&b, tx)
	return b.String()
}
