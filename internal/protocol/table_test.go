package protocol_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	p "github.com/concordtm/concord/internal/protocol"
)

// reachable collects states that random runs pass through, by mode and
// status, so that every (status, event) pair is tried on real states.
func reachable(t *testing.T) map[p.Mode]map[p.Status][]p.Txn {
	t.Helper()
	out := map[p.Mode]map[p.Status][]p.Txn{}
	for seed := uint64(1); seed <= 1600; seed++ {
		if seed > 400 && seed%6 != 1 {
			continue // past 400, only the 3PC seeds: its stuck status is rarer
		}
		s := newSim(seed)
		s.visit = func(x p.Txn) {
			if out[x.Mode] == nil {
				out[x.Mode] = map[p.Status][]p.Txn{}
			}
			if l := out[x.Mode][x.Status]; len(l) < 40 {
				out[x.Mode][x.Status] = append(l, x.Clone())
			}
		}
		if err := s.run(); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	return out
}

// randomEvent builds a well-formed event of kind k for t.
func randomEvent(rng *rand.Rand, m *p.Machine, t p.Txn, k p.EventKind) p.Event {
	now := t.UpdatedAt + int64(rng.IntN(5000))*int64(time.Millisecond)
	switch k {
	case p.EvSubmit:
		txn := p.Txn{GID: "w", Mode: m.Mode, Options: testOptions(), Concurrent: rng.IntN(2) == 0}
		if rng.IntN(2) == 0 {
			txn.Options.Timeout = int64(time.Second)
		}
		if m.Mode == p.ModeMsg && rng.IntN(2) == 0 && txn.Options.Timeout > 0 {
			txn.Branches = append(txn.Branches, p.Branch{ID: "check-back", ForwardOp: p.OpCheck, ForwardURL: "c"})
		}
		for i := range rng.IntN(4) + btoi(m.Mode == p.ModeMsg) {
			b := p.Branch{ID: strconv.Itoa(i), ForwardURL: "f", BackwardURL: "b"}
			if m.Mode == p.ModeTwoPC || m.Mode == p.ModeThreePC {
				b.BackwardURL = b.ForwardURL // one participant URL, no ordering
			} else if i > 0 && rng.IntN(2) == 0 {
				b.After = []string{strconv.Itoa(rng.IntN(i))}
			}
			txn.Branches = append(txn.Branches, b)
		}
		return p.Submit{Now: now, Txn: txn}
	case p.EvRegister:
		b := p.Branch{ID: "new" + strconv.Itoa(rng.IntN(3)), ForwardURL: "f", BackwardURL: "b"}
		if len(t.Branches) > 0 && rng.IntN(2) == 0 {
			b = t.Branches[rng.IntN(len(t.Branches))]
			if rng.IntN(2) == 0 {
				b.Payload = append([]byte("changed"), b.Payload...)
			}
		}
		return p.Register{Now: now, Branch: b}
	case p.EvCommit:
		return p.Commit{Now: now}
	case p.EvRollback:
		return p.Rollback{Now: now, Reason: "r"}
	case p.EvResult:
		r := p.Result{Now: now, Started: now - 1, Branch: "none", Op: p.OpAction}
		if len(t.Branches) > 0 {
			b := t.Branches[rng.IntN(len(t.Branches))]
			op, st := b.ForwardOp, b.Fwd
			switch rng.IntN(3) {
			case 0:
				op, st = b.BackwardOp, b.Bwd
			case 1:
				if b.MidOp != "" {
					op, st = b.MidOp, b.Mid
				}
			}
			r.Branch, r.Op, r.Attempt = b.ID, op, st.Attempts-1+rng.IntN(3)
		}
		outcomes := []p.Outcome{p.OutcomeSuccess, p.OutcomeRejected, p.OutcomeUnknown}
		if m.Mode == p.ModeTwoPC {
			outcomes = append(outcomes, p.OutcomeReadOnly)
		}
		r.Outcome = outcomes[rng.IntN(len(outcomes))]
		return r
	case p.EvTick:
		return p.Tick{Now: now}
	case p.EvRetry:
		return p.Retry{Now: now}
	case p.EvAbort:
		return p.Abort{Now: now, Reason: "op"}
	case p.EvRecover:
		return p.Recover{Now: now}
	}
	panic(fmt.Sprintf("unknown kind %q", k))
}

// TestTableWalk tries every (status, event kind) pair of every machine:
// Step either lands in the row's To set or refuses with an error wrapping
// ErrInvalidTransition, never panics and never modifies its input.
func TestTableWalk(t *testing.T) {
	states := reachable(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, m := range machines {
		for _, st := range allStatuses {
			samples := states[m.Mode][st]
			if st == p.StatusNew {
				samples = []p.Txn{{}}
			}
			used := false
			for _, k := range allKinds {
				used = used || m.Find(st, k) != nil
			}
			if len(samples) == 0 {
				if used {
					t.Errorf("%s: status %q has transitions but no run reached it", m.Mode, st)
					continue
				}
				// A status the mode never uses: every event is refused.
				for _, l := range states[m.Mode] {
					x := l[0].Clone()
					x.Status = st
					samples = append(samples, x)
					break
				}
			}
			for _, k := range allKinds {
				tr := m.Find(st, k)
				for _, txn := range samples {
					for range 3 {
						ev := randomEvent(rng, m, txn, k)
						if err := walkOne(m, tr, txn, ev); err != nil {
							t.Errorf("%s: %q on %q: %v\nstate:\n%s", m.Mode, k, st, err, fmtTxn(txn))
						}
					}
				}
			}
		}
	}
}

func walkOne(m *p.Machine, tr *p.Transition, txn p.Txn, ev p.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	before := snapshot(txn)
	nt, fx, err := m.Step(txn, ev)
	if d := sameTxn(before, txn); d != nil {
		return fmt.Errorf("input modified: %v", d)
	}
	if tr == nil {
		if !errors.Is(err, p.ErrInvalidTransition) {
			return fmt.Errorf("no row, but Step returned %v", err)
		}
		if len(fx) > 0 || sameTxn(nt, txn) != nil {
			return fmt.Errorf("refused, but returned effects or a new state")
		}
		return nil
	}
	if err != nil {
		if errors.Is(err, p.ErrConflict) && ev.Kind() == p.EvRegister {
			return nil
		}
		// A guarded row: the event is allowed in only part of the status
		// (a stuck message may be aborted only before its producer
		// committed); the guard refuses like a missing row would.
		if errors.Is(err, p.ErrInvalidTransition) && (ev.Kind() == p.EvAbort || ev.Kind() == p.EvRollback) && txn.Status == p.StatusStuck {
			if len(fx) > 0 || sameTxn(nt, txn) != nil {
				return fmt.Errorf("refused, but returned effects or a new state")
			}
			return nil
		}
		return fmt.Errorf("row exists, but Step returned %v", err)
	}
	if !slices.Contains(tr.To, nt.Status) {
		return fmt.Errorf("status %q not in %v", nt.Status, tr.To)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
