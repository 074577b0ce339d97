package crash

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
	"github.com/concordtm/concord/participant"
)

// serverFlags make retries and timeouts short enough for tests. The retry
// budget is large: a participant that is slow under the race detector must
// not turn a transaction stuck.
var serverFlags = []string{
	"-retry-initial", "20ms", "-retry-max", "200ms",
	"-branch-timeout", "2s", "-timeout", "30s",
	"-max-attempts", "100", "-max-total-attempts", "1000",
	"-max-wait", "5s",
}

// settleTimeout bounds how long a test waits for recovery to finish a
// transaction after a restart.
const settleTimeout = 60 * time.Second

// coord is one life of the coordinator process over a data directory.
type coord = proc.Life

// startCoord starts `concord serve` on dir with this package's flags and
// the failpoints armed (none if empty).
func startCoord(t *testing.T, dir, failpoints string) *coord {
	t.Helper()
	return proc.StartLife(t, dir, failpoints, settleTimeout, serverFlags...)
}

// waitSettled waits, without submitting anything, until gid is final or
// stuck, and returns it.
func waitSettled(t *testing.T, c *client.Client, gid string) *client.Transaction {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
	defer cancel()
	tx, err := c.Wait(ctx, gid)
	if err != nil {
		t.Fatalf("wait %s: %v (last seen: %v)", gid, err, describeTx(tx))
	}
	return tx
}

// describeTx renders a transaction for failure messages.
func describeTx(tx *client.Transaction) string {
	if tx == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", tx.GID, tx.Mode, tx.Status)
	if tx.Reason != "" {
		fmt.Fprintf(&b, " (%s)", tx.Reason)
	}
	for _, br := range tx.Branches {
		fmt.Fprintf(&b, " [%s %s=%s %s=%s]", br.ID, br.ForwardOp, br.ForwardStatus, br.BackwardOp, br.BackwardStatus)
	}
	return b.String()
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, timeout, what, cond)
}

// leg is one branch of a saga or TCC: a transfer at one bank.
type leg struct {
	bank *bank
	tr   transfer
}

// sagaSpec is a saga the test submits, under a client-chosen gid so it
// can be resubmitted unchanged.
type sagaSpec struct {
	gid  string
	legs []leg
}

// branchID is the id the coordinator gives the i-th branch (0-based).
func branchID(i int) string { return fmt.Sprint(i + 1) }

// build returns the SDK request for s; the same s always builds the same
// request, so a resubmission is recognised as the same saga.
func (s sagaSpec) build(c *client.Client) *client.Saga {
	sg := c.NewSaga(s.gid)
	for _, l := range s.legs {
		sg.Add(l.bank.Action(), l.bank.Compensate(), l.tr)
	}
	return sg
}

// ledger is what every bank's ledger says, read at one moment.
type ledger map[*bank]map[opKey]int

func readLedger(t *testing.T, banks ...*bank) ledger {
	t.Helper()
	l := ledger{}
	for _, b := range banks {
		l[b] = b.Applied(t)
	}
	return l
}

// count returns how many times op of the i-th leg took effect.
func (l ledger) count(gid string, i int, lg leg, op participant.Op) int {
	return l[lg.bank][opKey{gid, branchID(i), op}]
}

// expectApplied checks the ledger for every leg of a saga: want[i] is
// {actions, compensations} applied for leg i.
func expectApplied(t *testing.T, l ledger, s sagaSpec, want [][2]int) {
	t.Helper()
	for i, lg := range s.legs {
		got := [2]int{l.count(s.gid, i, lg, participant.OpAction), l.count(s.gid, i, lg, participant.OpCompensate)}
		if got != want[i] {
			t.Errorf("%s branch %s: applied %d actions and %d compensations, want %d and %d",
				s.gid, branchID(i), got[0], got[1], want[i][0], want[i][1])
		}
	}
}

// checkOutcome checks a final saga against the ledger: a succeeded saga
// applied each action exactly once and no compensation, none of its legs
// was meant to be rejected; an aborted saga undid every action it applied,
// once, and never applied a leg meant to be rejected. It returns the legs
// that stay in effect.
func checkOutcome(t *testing.T, l ledger, s sagaSpec, tx *client.Transaction) (settled []leg) {
	t.Helper()
	for i, lg := range s.legs {
		act := l.count(s.gid, i, lg, participant.OpAction)
		comp := l.count(s.gid, i, lg, participant.OpCompensate)
		switch tx.Status {
		case client.StatusSucceeded:
			if act != 1 || comp != 0 {
				t.Errorf("%s succeeded, but branch %s applied %d actions and %d compensations; want 1 and 0",
					s.gid, branchID(i), act, comp)
			}
			if lg.tr.Reject {
				t.Errorf("%s succeeded, but its branch %s is always rejected", s.gid, branchID(i))
			}
			settled = append(settled, lg)
		case client.StatusAborted:
			if act > 1 || comp != act {
				t.Errorf("%s aborted, but branch %s applied %d actions and %d compensations; want as many of each, at most 1",
					s.gid, branchID(i), act, comp)
			}
			if lg.tr.Reject && act != 0 {
				t.Errorf("%s: branch %s applied an action that is always rejected", s.gid, branchID(i))
			}
		default:
			t.Errorf("%s is not final: %s", s.gid, describeTx(tx))
			return nil
		}
	}
	return settled
}

// transfersAt returns the transfers of the legs at bank b.
func transfersAt(b *bank, legs []leg) []transfer {
	var out []transfer
	for _, l := range legs {
		if l.bank == b {
			out = append(out, l.tr)
		}
	}
	return out
}

// isNotFound reports whether err says the coordinator does not know a gid.
func isNotFound(err error) bool { return errors.Is(err, client.ErrNotFound) }
