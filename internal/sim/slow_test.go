package sim

import (
	"strings"
	"testing"

	p "github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/saga"
)

// The lost-money run of d215ef5: B's action call is slower than the call
// timeout, its retry is refused while the first call still runs, and the
// first call lands after the saga decided to abort. With the rule that
// compensates a rejected action after an unknown outcome turned off, the
// explorer finds a saga that ended aborted with B's action applied, in six
// steps; with the rule on, the same bounds hold no violation. Crashes,
// losses and duplicates on top do not change either answer.
func TestExploreSagaSlowLate(t *testing.T) {
	for _, cfg := range []Config{
		{Protocol: p.ModeSaga, Participants: 2, Faults: FaultSet(FaultSlow | FaultLate), MaxFaults: 2},
		{Protocol: p.ModeSaga, Participants: 2, Faults: FaultSet(FaultSlow | FaultLate | FaultCrash | FaultLoss | FaultDup), MaxFaults: 3},
	} {
		unsafe := cfg
		unsafe.SkipUnsure = true
		r, err := Explore(unsafe)
		if err != nil {
			t.Fatal(err)
		}
		if !saga.CompensateUnsure {
			t.Fatal("the rule stayed off after the exploration")
		}
		ce := r.Counterexample
		if ce == nil {
			t.Fatalf("%s: no counterexample in %d states", unsafe, r.States)
		}
		text := ce.Text()
		if !strings.HasPrefix(ce.Violation, "atomicity: the saga aborted but B's action is still applied") || len(ce.Steps)-1 > 6 {
			t.Fatalf("%s: want B's action left applied after an abort, in at most 6 steps:\n%s", unsafe, text)
		}
		for _, step := range []string{"deliver slowly TM → B: action", "call timeout of action B", "refuse the retry TM → B: action", "B → TM: action rejected", "B finishes the slow action (call 1)"} {
			if !strings.Contains(text, step) {
				t.Errorf("%s: counterexample lacks %q:\n%s", unsafe, step, text)
			}
		}
		if again := Replay(unsafe, ce.actions); again.Text() != text {
			t.Errorf("the counterexample does not replay:\n%s\n---\n%s", text, again.Text())
		}
		t.Logf("%s: %d states, shortest counterexample:\n%s", unsafe, r.States, text)

		r, err = Explore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Violations != 0 {
			t.Fatalf("%s: %d violations\n%s", cfg, r.Violations, r.Counterexample.Text())
		}
		if r.Settled == 0 || r.Truncated {
			t.Fatalf("%s: settled %d, truncated %v", cfg, r.Settled, r.Truncated)
		}
		t.Logf("%s: %d states, %d settled, no violation", cfg, r.States, r.Settled)
	}
}

// The same story step by step with the rule on. The coordinator compensates
// B's refused action, whose first call's outcome it never learnt. If the
// compensation comes first it is a null compensation, and the first call,
// landing, is refused; if the first call lands first, the compensation
// undoes it. Either way B ends with nothing applied.
func TestStorySagaLateLanding(t *testing.T) {
	for _, landFirst := range []bool{false, true} {
		s := slowStory(t, false)
		s.run(1000*ms, status(p.StatusCompensating))
		if landFirst {
			s.land(B)
			s.expect("B=committed C=init")
		}
		s.run(1000*ms, status(p.StatusAborted))
		if !landFirst {
			s.expect("B=aborted+working C=init")
			s.land(B)
		}
		s.expect("B=aborted C=init")
		if s.w.Parts[B].Biz.Net != 0 || s.w.Parts[B].Biz.Fwd == !landFirst {
			t.Fatalf("land first %v: B's barrier %+v", landFirst, s.w.Parts[B].Biz)
		}
		s.expectNoViolation()
		if got := s.w.Coord.Mem.Branches[0].Bwd.Status; got != p.OpDone {
			t.Fatalf("B's compensation %s, want done", got)
		}
	}
}

// With the rule off the coordinator trusts the refusal: it aborts without
// compensating B, and the first call, landing, leaves B's action applied.
func TestStorySagaLateLandingSkipUnsure(t *testing.T) {
	s := slowStory(t, true)
	s.run(1000*ms, status(p.StatusAborted))
	if got := s.w.Coord.Mem.Branches[0].Bwd.Status; got != p.OpSkipped {
		t.Fatalf("B's compensation %s, want skipped", got)
	}
	s.expectNoViolation()
	s.land(B)
	s.expect("B=committed C=init")
	s.expectViolation("atomicity: the saga aborted but B's action is still applied")
}

// slowStory plays B's action call slow, its timeout, and the retry refused
// while the first call runs; the refusal is on its way to the coordinator.
func slowStory(t *testing.T, skipUnsure bool) *story {
	s := newStory(t, Config{Protocol: p.ModeSaga, Participants: 2, Faults: FaultSet(FaultSlow | FaultLate), MaxFaults: 2, SkipUnsure: skipUnsure})
	s.fault(aSlow, B)
	s.expect("B=init+working C=init")
	// Slower than the call timeout: nothing lands while the coordinator
	// waits for the call.
	if s.has(aLand) {
		t.Fatal("the slow call may land while the coordinator still waits for it")
	}
	s.run(1000*ms, func(w *World) bool { return len(w.Net) > 0 })
	if !s.has(aLand) {
		t.Fatal("the slow call cannot land after the call timed out")
	}
	s.fault(aLate, B)
	s.expect("B=init+working C=init")
	return s
}

// fault injects kind on the oldest message, which must go to node to.
func (s *story) fault(kind actKind, to int) {
	s.t.Helper()
	for _, a := range s.w.enabled() {
		if a.Kind == kind && s.w.Net[0].ID == a.Msg && s.w.Net[0].To == to {
			s.do(a)
			return
		}
	}
	s.t.Fatalf("fault %d to %s not enabled\n%s", kind, nodeName(to), Replay(s.cfg, s.actions).Text())
}

func (s *story) land(node int) {
	s.t.Helper()
	if !s.w.canLand(node) {
		s.t.Fatalf("%s has no slow call that can land", nodeName(node))
	}
	s.do(Action{Kind: aLand, Node: node})
}

func (s *story) has(kind actKind) bool {
	for _, a := range s.w.enabled() {
		if a.Kind == kind {
			return true
		}
	}
	return false
}

// The saga faults by name, and the configurations they make no sense in.
func TestSagaFaultsConfig(t *testing.T) {
	set, err := ParseFaults("slow, late,crash")
	if err != nil || set.String() != "crash,slow,late" {
		t.Fatalf("ParseFaults: %v, %v", set, err)
	}
	if _, err := ParseFaults("slow,tardy"); err == nil || !strings.Contains(err.Error(), "slow, late") {
		t.Fatalf("an unknown fault's error does not list slow and late: %v", err)
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Protocol: p.ModeSaga, Participants: 2, Faults: FaultSet(FaultLate)}, "the late fault needs slow"},
		{Config{Protocol: p.ModeTCC, Participants: 2, Faults: FaultSet(FaultSlow)}, "for sagas, not tcc"},
		{Config{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultSlow | FaultLate)}, "for sagas, not 2pc"},
		{Config{Protocol: p.ModeThreePC, Participants: 2, SkipUnsure: true}, "saga-skip-unsure rule is for sagas"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.cfg, err, c.want)
		}
	}
	cfg := Config{Protocol: p.ModeSaga, Participants: 2, SkipUnsure: true}
	if err := cfg.Validate(); err != nil || !strings.Contains(cfg.String(), "UNSAFE") {
		t.Fatalf("%q: %v", cfg, err)
	}
}
