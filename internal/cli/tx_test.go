package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
)

func TestPrintTransactionTimeline(t *testing.T) {
	created := time.UnixMilli(1_700_000_000_000)
	at := func(ms int) time.Time { return created.Add(time.Duration(ms) * time.Millisecond) }
	tx := &client.Transaction{
		GID: "order-1", Mode: "saga", Status: "aborted", Reason: "branch 2 rejected: out of stock",
		CreatedAt: created, DecidedAt: at(9), UpdatedAt: at(12), TotalAttempts: 3,
		Branches: []client.BranchState{
			{ID: "1", ForwardOp: "action", BackwardOp: "compensate", ForwardStatus: "done", BackwardStatus: "done", PayloadBytes: 5,
				Attempts: []client.Attempt{
					{Op: "action", Number: 1, StartedAt: at(2), Duration: 2900 * time.Microsecond, Outcome: "success"},
					{Op: "compensate", Number: 1, StartedAt: at(10), Duration: 1900 * time.Microsecond, Outcome: "success"},
				}},
			{ID: "2", ForwardOp: "action", BackwardOp: "compensate", ForwardStatus: "rejected", BackwardStatus: "skipped",
				ForwardUnsure: true, RetryingOp: "compensate", NextRetryAt: at(40), AttemptsLeft: 3,
				Attempts: []client.Attempt{{Op: "action", Number: 1, StartedAt: at(6), Duration: 2200 * time.Microsecond, Outcome: "rejected", Error: "out of stock"}}},
		},
	}
	var b strings.Builder
	PrintTransaction(&b, tx)
	out := b.String()
	for _, want := range []string{
		"decision:  roll back, durable at +9ms",
		"branch 1  action=done  compensate=done  payload 5 B",
		"       +2ms  action     #1  success        2.9ms",
		"      +10ms  compensate #1  success        1.9ms",
		"       +6ms  action     #1  rejected       2.2ms  out of stock",
		"  unsure     an earlier action call's outcome was unknown",
		"  retrying   compensate next at +40ms, 3 calls left before it is given up",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
