package server

import (
	"time"

	v1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/internal/destination"
	"github.com/concordtm/concord/internal/protocol"
)

func ms(ns int64) int64 {
	if ns == 0 {
		return 0
	}
	return ns / int64(time.Millisecond)
}

// toProto renders a transaction for the API. URLs are shown with their
// credentials hidden (destination.Redact); the record keeps them.
func toProto(t protocol.Txn) *v1.Transaction {
	out := &v1.Transaction{
		Gid: t.GID, Mode: string(t.Mode), Status: string(t.Status), Reason: t.Reason,
		StuckPhase: string(t.StuckPhase), CreatedAtUnixMs: ms(t.CreatedAt), UpdatedAtUnixMs: ms(t.UpdatedAt),
		DeadlineUnixMs: ms(t.Deadline), DecidedAtUnixMs: ms(t.DecidedAt), Concurrent: t.Concurrent,
		TotalAttempts: int32(t.TotalAttempts), StuckReason: t.StuckReason,
	}
	for _, b := range t.Branches {
		pb := &v1.Branch{
			Id: b.ID, ForwardUrl: destination.Redact(b.ForwardURL), BackwardUrl: destination.Redact(b.BackwardURL),
			ForwardOp: string(b.ForwardOp), BackwardOp: string(b.BackwardOp),
			ForwardStatus: string(b.Fwd.Status), BackwardStatus: string(b.Bwd.Status),
			After: b.After, PayloadBytes: int64(len(b.Payload)),
		}
		if b.MidOp != "" {
			pb.MidOp, pb.MidStatus = string(b.MidOp), string(b.Mid.Status)
		}
		pb.ForwardUnsure = b.Fwd.Unsure
		for _, r := range []struct {
			op protocol.Op
			st *protocol.OpState
		}{{b.ForwardOp, &b.Fwd}, {b.MidOp, &b.Mid}, {b.BackwardOp, &b.Bwd}} {
			if r.st.Status == protocol.OpRetrying {
				pb.RetryingOp, pb.NextRetryAtUnixMs = string(r.op), ms(r.st.NextAt)
				pb.AttemptsLeft = int32(max(0, min(t.Options.MaxAttempts-r.st.Tries, t.Options.MaxTotalAttempts-t.TotalAttempts)))
				break
			}
		}
		for _, a := range b.History {
			pb.Attempts = append(pb.Attempts, &v1.Attempt{
				Op: string(a.Op), Number: int32(a.Number), StartedAtUnixMs: ms(a.Started),
				DurationUs: a.Duration / int64(time.Microsecond), Outcome: string(a.Outcome), Error: a.Error,
			})
		}
		out.Branches = append(out.Branches, pb)
	}
	return out
}

// optionsFromProto converts request options (milliseconds) to nanoseconds.
func optionsFromProto(o *v1.TransactionOptions) protocol.Options {
	if o == nil {
		return protocol.Options{}
	}
	d := func(v int64) int64 { return v * int64(time.Millisecond) }
	return protocol.Options{
		Timeout: d(o.TimeoutMs), BranchTimeout: d(o.BranchTimeoutMs),
		MaxAttempts: int(o.MaxAttempts), MaxTotalAttempts: int(o.MaxTotalAttempts),
		RetryInitial: d(o.RetryInitialMs), RetryMax: d(o.RetryMaxMs),
	}
}
