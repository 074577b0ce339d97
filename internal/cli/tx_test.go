package cli

import (
	"strings"
	"testing"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

func TestPrintTransactionTimeline(t *testing.T) {
	const created = 1_700_000_000_000
	tx := &v1.Transaction{
		Gid: "order-1", Mode: "saga", Status: "aborted", Reason: "branch 2 rejected: out of stock",
		CreatedAtUnixMs: created, DecidedAtUnixMs: created + 9, UpdatedAtUnixMs: created + 12, TotalAttempts: 3,
		Branches: []*v1.Branch{
			{Id: "1", ForwardOp: "action", BackwardOp: "compensate", ForwardStatus: "done", BackwardStatus: "done", PayloadBytes: 5,
				Attempts: []*v1.Attempt{
					{Op: "action", Number: 1, StartedAtUnixMs: created + 2, DurationUs: 2900, Outcome: "success"},
					{Op: "compensate", Number: 1, StartedAtUnixMs: created + 10, DurationUs: 1900, Outcome: "success"},
				}},
			{Id: "2", ForwardOp: "action", BackwardOp: "compensate", ForwardStatus: "rejected", BackwardStatus: "skipped",
				ForwardUnsure: true, RetryingOp: "compensate", NextRetryAtUnixMs: created + 40, AttemptsLeft: 3,
				Attempts: []*v1.Attempt{{Op: "action", Number: 1, StartedAtUnixMs: created + 6, DurationUs: 2200, Outcome: "rejected", Error: "out of stock"}}},
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
