package client

import (
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// Transaction is a global transaction as the coordinator reports it: a
// snapshot, taken when the call that returned it was answered.
type Transaction struct {
	GID    string
	Mode   string // saga, tcc, 2pc, 3pc or msg
	Status string // one of Statuses
	// Reason says why it aborted (or is rolling back).
	Reason string
	// StuckPhase is, for a stuck transaction, the status a retry resumes;
	// StuckReason says which operation keeps failing, and how.
	StuckPhase  string
	StuckReason string
	// Concurrent: a saga whose branches run as a dependency graph.
	Concurrent bool
	// TotalAttempts counts the calls made to participants.
	TotalAttempts int
	CreatedAt     time.Time
	UpdatedAt     time.Time
	Deadline      time.Time // zero: none
	DecidedAt     time.Time // when the decision was durable; zero while undecided
	Branches      []BranchState
}

// BranchState is one branch of a Transaction.
type BranchState struct {
	ID string
	// ForwardOp is the saga action, the TCC confirm, the 2PC prepare, the
	// 3PC can-commit or the message delivery; BackwardOp the compensation,
	// cancel, phase-2 commit or abort, 3PC do-commit or abort; MidOp the 3PC
	// pre-commit. Their statuses are idle, inflight, retrying, done,
	// rejected, failed or skipped.
	ForwardOp, MidOp, BackwardOp             string
	ForwardStatus, MidStatus, BackwardStatus string
	ForwardURL, BackwardURL                  string
	After                                    []string // saga DAG: the branches it waits for
	PayloadBytes                             int64
	// Attempts are the last calls made (at most 64), oldest first.
	Attempts []Attempt
	// While an operation waits to be retried: which, when, and how many
	// calls its budget still allows.
	RetryingOp   string
	NextRetryAt  time.Time
	AttemptsLeft int
	// ForwardUnsure: some call of the forward operation had an unknown
	// outcome, so it may have taken effect even if a later call was
	// refused (a saga that aborts compensates such a branch).
	ForwardUnsure bool
}

// Attempt is one call to a participant.
type Attempt struct {
	Op        string
	Number    int
	StartedAt time.Time
	Duration  time.Duration
	Outcome   string // success, rejected, unknown or read-only
	Error     string
}

// Branch returns the branch with the given id, or nil.
func (t *Transaction) Branch(id string) *BranchState {
	for i := range t.Branches {
		if t.Branches[i].ID == id {
			return &t.Branches[i]
		}
	}
	return nil
}

func unixMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// fromProto converts the API's form; nil stays nil.
func fromProto(p *v1.Transaction) *Transaction {
	if p == nil {
		return nil
	}
	t := &Transaction{
		GID: p.Gid, Mode: p.Mode, Status: p.Status, Reason: p.Reason, StuckPhase: p.StuckPhase, StuckReason: p.StuckReason,
		Concurrent: p.Concurrent, TotalAttempts: int(p.TotalAttempts),
		CreatedAt: unixMs(p.CreatedAtUnixMs), UpdatedAt: unixMs(p.UpdatedAtUnixMs),
		Deadline: unixMs(p.DeadlineUnixMs), DecidedAt: unixMs(p.DecidedAtUnixMs),
	}
	for _, b := range p.Branches {
		bs := BranchState{
			ID: b.Id, ForwardOp: b.ForwardOp, MidOp: b.MidOp, BackwardOp: b.BackwardOp,
			ForwardStatus: b.ForwardStatus, MidStatus: b.MidStatus, BackwardStatus: b.BackwardStatus,
			ForwardURL: b.ForwardUrl, BackwardURL: b.BackwardUrl, After: b.After, PayloadBytes: b.PayloadBytes,
			RetryingOp: b.RetryingOp, NextRetryAt: unixMs(b.NextRetryAtUnixMs), AttemptsLeft: int(b.AttemptsLeft),
			ForwardUnsure: b.ForwardUnsure,
		}
		for _, a := range b.Attempts {
			bs.Attempts = append(bs.Attempts, Attempt{
				Op: a.Op, Number: int(a.Number), StartedAt: unixMs(a.StartedAtUnixMs),
				Duration: time.Duration(a.DurationUs) * time.Microsecond, Outcome: a.Outcome, Error: a.Error,
			})
		}
		t.Branches = append(t.Branches, bs)
	}
	return t
}

func toUnixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// toProto is fromProto's inverse.
func (t *Transaction) toProto() *v1.Transaction {
	p := &v1.Transaction{
		Gid: t.GID, Mode: t.Mode, Status: t.Status, Reason: t.Reason, StuckPhase: t.StuckPhase, StuckReason: t.StuckReason,
		Concurrent: t.Concurrent, TotalAttempts: int32(t.TotalAttempts),
		CreatedAtUnixMs: toUnixMs(t.CreatedAt), UpdatedAtUnixMs: toUnixMs(t.UpdatedAt),
		DeadlineUnixMs: toUnixMs(t.Deadline), DecidedAtUnixMs: toUnixMs(t.DecidedAt),
	}
	for _, b := range t.Branches {
		pb := &v1.Branch{
			Id: b.ID, ForwardOp: b.ForwardOp, MidOp: b.MidOp, BackwardOp: b.BackwardOp,
			ForwardStatus: b.ForwardStatus, MidStatus: b.MidStatus, BackwardStatus: b.BackwardStatus,
			ForwardUrl: b.ForwardURL, BackwardUrl: b.BackwardURL, After: b.After, PayloadBytes: b.PayloadBytes,
			RetryingOp: b.RetryingOp, NextRetryAtUnixMs: toUnixMs(b.NextRetryAt), AttemptsLeft: int32(b.AttemptsLeft),
			ForwardUnsure: b.ForwardUnsure,
		}
		for _, a := range b.Attempts {
			pb.Attempts = append(pb.Attempts, &v1.Attempt{
				Op: a.Op, Number: int32(a.Number), StartedAtUnixMs: toUnixMs(a.StartedAt),
				DurationUs: int64(a.Duration / time.Microsecond), Outcome: a.Outcome, Error: a.Error,
			})
		}
		p.Branches = append(p.Branches, pb)
	}
	return p
}

// MarshalJSON writes the transaction as the HTTP/JSON API does (field
// names as in docs/api.md, times as *_unix_ms), so that logs and tools see
// one shape.
func (t *Transaction) MarshalJSON() ([]byte, error) {
	return protojson.MarshalOptions{UseProtoNames: true}.Marshal(t.toProto())
}

// UnmarshalJSON reads what MarshalJSON (or the HTTP/JSON API) writes.
func (t *Transaction) UnmarshalJSON(b []byte) error {
	var p v1.Transaction
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &p); err != nil {
		return err
	}
	*t = *fromProto(&p)
	return nil
}

// GetStatus returns t.Status, or "" for a nil t: for error paths, where
// a call failed and returned no transaction.
func (t *Transaction) GetStatus() string {
	if t == nil {
		return ""
	}
	return t.Status
}

// GetReason returns t.Reason, or "" for a nil t.
func (t *Transaction) GetReason() string {
	if t == nil {
		return ""
	}
	return t.Reason
}
