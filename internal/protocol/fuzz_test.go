package protocol_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	p "github.com/concordtm/concord/internal/protocol"
)

// FuzzStep drives a valid transaction with events derived from bytes: it
// must never panic, never modify its input, only refuse events with the
// package's sentinel errors, and order its effects as the runtime needs
// them (checkStepEffects).
func FuzzStep(f *testing.F) {
	f.Add([]byte{0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{1, 2, 1, 0, 1, 1, 2, 0, 2, 4, 0, 0, 4, 1, 1, 7, 0, 6})
	f.Add([]byte{0, 5, 4, 0, 0, 4, 1, 2, 5, 0, 8, 0, 6, 0, 4, 3, 3, 3})
	f.Add([]byte{1, 3, 1, 1, 1, 2, 2, 0, 4, 0, 0, 4, 0, 1, 5, 0, 6, 0})
	f.Add([]byte{2, 3, 0, 0, 1, 0, 1, 1, 0, 2, 1, 4, 0, 7, 5, 0, 16, 1, 0, 32, 2, 6, 0, 0})
	f.Add([]byte{2, 2, 0, 96, 1, 0, 1, 1, 0, 16, 1, 0, 17, 2, 4, 0, 200, 7, 0, 1, 5, 0, 1, 6, 0, 1})
	f.Add([]byte{3, 2, 0, 0, 1, 0, 1, 1, 0, 16, 1, 0, 17, 1, 0, 32, 1, 0, 33, 7, 0, 1, 0, 48, 1, 0, 49, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		mode := []p.Mode{p.ModeSaga, p.ModeTCC, p.ModeTwoPC, p.ModeThreePC, p.ModeMsg}[data[0]%5]
		m := machineFor(mode)
		n := int(data[1]%5) + 1
		txn := p.Txn{GID: "fz", Mode: mode, Options: testOptions(), Concurrent: data[1]&0x80 != 0}
		txn.Options.Timeout = int64(3 * time.Second)
		var ids []string
		if mode == p.ModeMsg && data[1]&0x40 != 0 {
			ids = append(ids, "check-back")
			txn.Branches = append(txn.Branches, p.Branch{ID: "check-back", ForwardOp: p.OpCheck, ForwardURL: "c"})
		}
		for i := range n {
			id := string(rune('a' + i))
			ids = append(ids, id)
			switch mode {
			case p.ModeSaga:
				b := p.Branch{ID: id, ForwardURL: "f", BackwardURL: "b"}
				if i > 0 && data[1]&0x40 != 0 {
					b.After = []string{ids[i-1]}
				}
				txn.Branches = append(txn.Branches, b)
			case p.ModeTwoPC, p.ModeThreePC, p.ModeMsg:
				txn.Branches = append(txn.Branches, p.Branch{ID: id, ForwardURL: "u"})
			}
		}
		st, _, err := m.Step(p.Txn{}, p.Submit{Now: 1, Txn: txn})
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		now := int64(1)
		ops := map[p.Mode][]p.Op{
			p.ModeSaga:    {p.OpAction, p.OpCompensate},
			p.ModeTCC:     {p.OpConfirm, p.OpCancel},
			p.ModeTwoPC:   {p.OpPrepare, p.OpCommit, p.OpAbort},
			p.ModeThreePC: {p.OpCanCommit, p.OpPreCommit, p.OpDoCommit, p.OpAbort},
			p.ModeMsg:     {p.OpDeliver, p.OpCheck},
		}[mode]
		for data = data[2:]; len(data) >= 3; data = data[3:] {
			k, a, b := data[0], int(data[1]), int(data[2])
			now += int64(b) * int64(10*time.Millisecond)
			id := ids[a%len(ids)]
			var ev p.Event
			switch k % 9 {
			case 0:
				outcomes := []p.Outcome{p.OutcomeSuccess, p.OutcomeRejected, p.OutcomeUnknown, "garbage"}
				if (mode == p.ModeTwoPC || mode == p.ModeThreePC) && b&0x40 != 0 {
					outcomes[3] = p.OutcomeReadOnly
				}
				ev = p.Result{Now: now, Branch: id, Op: ops[(a>>4)%len(ops)], Attempt: b % 4, Outcome: outcomes[(a>>5)%4]}
			case 1:
				ev = p.Register{Now: now, Branch: p.Branch{ID: id, ForwardURL: "f", BackwardURL: "b", Payload: []byte{byte(b % 2)}}}
			case 2:
				ev = p.Commit{Now: now}
			case 3:
				ev = p.Rollback{Now: now}
			case 4:
				ev = p.Tick{Now: now}
			case 5:
				ev = p.Retry{Now: now}
			case 6:
				ev = p.Abort{Now: now}
			case 7:
				ev = p.Recover{Now: now}
			default:
				ev = p.Submit{Now: now, Txn: txn}
			}
			before := snapshot(st)
			nt, fx, err := m.Step(st, ev)
			if d := sameTxn(before, st); d != nil {
				t.Fatalf("input modified: %v", d)
			}
			if err != nil {
				if !errors.Is(err, p.ErrInvalidTransition) && !errors.Is(err, p.ErrConflict) && !errors.Is(err, p.ErrInvalidEvent) {
					t.Fatalf("%s: error without a sentinel: %v", ev.Kind(), err)
				}
				continue
			}
			if err := checkStepEffects(st, nt, ev, fx); err != nil {
				t.Fatalf("%s in %s: %v\neffects: %s", ev.Kind(), statusOf(st), err, fmtEffects(fx))
			}
			st = nt
		}
	})
}

// checkStepEffects checks the effects of one accepted step from before to
// after, by the rules the runtime relies on (the property test's
// checkEffects holds the same ones): a changed state is written (Persist)
// or deferred (Deferred), first in the list; nothing that must follow a
// durable write (a Report, an Alert, a Call) follows a Deferred, except a
// saga's next actions after an action's success that leaves it running
// (saga.go: a restart re-runs every action not known done, and MaybeAhead
// compensates the branches it cannot prove idle); only the steps each mode
// documents defer.
func checkStepEffects(before, after p.Txn, ev p.Event, fx []p.Effect) error {
	persisted := len(fx) > 0 && fx[0] == p.Effect(p.Persist{})
	deferred := len(fx) > 0 && fx[0] == p.Effect(p.Deferred{})
	if !persisted && !deferred {
		if d := sameTxn(before, after); d != nil {
			return fmt.Errorf("state changed without a Persist or Deferred: %v", d)
		}
	}
	sagaAction := false
	if deferred {
		r, isResult := ev.(p.Result)
		switch before.Mode {
		case p.ModeSaga:
			if before.Status != p.StatusRunning || after.Status != p.StatusRunning ||
				!isResult || r.Op != p.OpAction || r.Outcome != p.OutcomeSuccess {
				return fmt.Errorf("a saga deferred a write of %s from %s to %s; only an action's success that leaves it running may",
					ev.Kind(), before.Status, after.Status)
			}
			sagaAction = true
		case p.ModeMsg:
			if before.Status != p.StatusDelivering || !isResult {
				return fmt.Errorf("a message deferred a write of %s in %s; only delivery acknowledgements may", ev.Kind(), before.Status)
			}
		case p.ModeTCC:
			if before.Status != p.StatusConfirming && before.Status != p.StatusCancelling || !isResult {
				return fmt.Errorf("a TCC deferred a write of %s in %s; only confirm/cancel acknowledgements may", ev.Kind(), before.Status)
			}
		}
	}
	for i, e := range fx {
		switch e := e.(type) {
		case p.Persist, p.Deferred:
			if i != 0 {
				return fmt.Errorf("%s at position %d", fmtEffect(e), i)
			}
		case p.Report, p.Alert:
			if !persisted {
				return fmt.Errorf("%s at %d without a Persist first", fmtEffect(e), i)
			}
		case p.Call:
			if !persisted && !(sagaAction && e.Op == p.OpAction) {
				return fmt.Errorf("%s at %d without a Persist first", fmtEffect(e), i)
			}
		}
	}
	return nil
}

func statusOf(t p.Txn) p.Status {
	if t.Status == p.StatusNew {
		return "new"
	}
	return t.Status
}
