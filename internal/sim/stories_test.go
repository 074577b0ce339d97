package sim

import (
	"strings"
	"testing"

	p "github.com/concordtm/concord/internal/protocol"
)

// The seeds' stories, scripted step by step on the simulator. Nodes: TM is
// the coordinator (the seeds' A), B and C the participants.

type story struct {
	t       *testing.T
	cfg     Config
	w       *World
	actions []Action
}

func newStory(t *testing.T, cfg Config) *story {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &story{t: t, cfg: cfg, w: newWorld(&cfg)}
}

func (s *story) do(a Action) {
	s.actions = append(s.actions, a)
	s.w = s.w.apply(a)
}

// run lets the system go on by itself, without faults or repairs: the
// oldest message is delivered, else the earliest timer fires, until stop
// holds, nothing is left, or the next timer is past until.
func (s *story) run(until int64, stop func(w *World) bool) {
	for range 10000 {
		if stop != nil && stop(s.w) {
			return
		}
		var next *Action
		for _, a := range s.w.enabled() {
			if a.Kind == aDeliver || a.Kind == aRetry {
				next = &a
				break
			}
			if a.Kind == aTimer && len(s.w.Net) == 0 && next == nil {
				next = &a
			}
		}
		if next == nil {
			return
		}
		if next.Kind == aTimer {
			at := s.w.Coord.Tick
			for _, t := range s.w.timers() {
				if t.Node == next.Node && t.Call == next.Call {
					at = t.At
				}
			}
			if at > until {
				return
			}
		}
		s.do(*next)
	}
	s.t.Fatal("run did not stop")
}

func (s *story) crash(node int) { s.do(Action{Kind: aCrash, Node: node}) }
func (s *story) restart(node int) {
	s.do(Action{Kind: aRestart, Node: node})
}

// lose drops the first message to node carrying op.
func (s *story) lose(to int, op p.Op) {
	for _, m := range s.w.Net {
		if m.To == to && m.Op == op {
			s.do(Action{Kind: aDrop, Msg: m.ID})
			return
		}
	}
	s.t.Fatalf("no %s to %s in flight", op, nodeName(to))
}

func (s *story) states() string {
	var out []string
	for i := 1; i <= s.cfg.Participants; i++ {
		st := nodeName(i) + "=" + string(s.w.pstate(i))
		if s.w.Parts[i].Working != 0 {
			st += "+working" // a slow saga call runs
		}
		out = append(out, st)
	}
	return strings.Join(out, " ")
}

func (s *story) expect(states string) {
	s.t.Helper()
	if got := s.states(); got != states {
		s.t.Fatalf("participants %s, want %s\n%s", got, states, Replay(s.cfg, s.actions).Text())
	}
}

func (s *story) expectViolation(kind string) {
	s.t.Helper()
	if !strings.HasPrefix(s.w.Violation, kind) {
		s.t.Fatalf("violation %q, want %s\n%s", s.w.Violation, kind, Replay(s.cfg, s.actions).Text())
	}
}

func (s *story) expectNoViolation() {
	s.t.Helper()
	if s.w.Violation != "" {
		s.t.Fatalf("violation: %s\n%s", s.w.Violation, Replay(s.cfg, s.actions).Text())
	}
}

const (
	B = 1
	C = 2
)

func status(st p.Status) func(w *World) bool {
	return func(w *World) bool { return w.Coord.Mem.Status == st }
}

// 2PC: the coordinator dies after phase 1 (it decided commit; no commit
// went out). B and C stay prepared, holding their locks, asking, until it
// comes back; then it resends commit and they converge.
func TestStory2PCCoordinatorDiesAfterPhase1(t *testing.T) {
	s := newStory(t, Config{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 1})
	s.run(0, status(p.StatusCommitting))
	s.crash(coord)
	s.run(900*ms, nil)
	s.expect("B=voted C=voted")
	if !s.w.blocked() {
		t.Fatal("not blocked while the coordinator is down")
	}
	if s.w.MaxLocked < 900*ms {
		t.Fatalf("locks held %dms, want the whole outage", s.w.MaxLocked/ms)
	}
	s.restart(coord)
	s.run(2000*ms, nil)
	s.expect("B=committed C=committed")
	s.expectNoViolation()
}

// 2PC: DoCommit reaches only B (C's is lost, then the coordinator dies).
// With the decision on disk and retries, C gets it after the restart.
func TestStory2PCPartialCommitConverges(t *testing.T) {
	s := newStory(t, Config{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultCrash | FaultLoss), MaxFaults: 2})
	s.run(0, status(p.StatusCommitting))
	s.run(0, func(w *World) bool { return w.pstate(B) == p.PCommitted })
	s.lose(C, p.OpCommit)
	s.crash(coord)
	s.run(500*ms, nil)
	s.expect("B=committed C=voted")
	s.restart(coord)
	s.run(2000*ms, nil)
	s.expect("B=committed C=committed")
	s.expectNoViolation()
	// Without the restart, C would have learnt it by asking: the decision
	// is on disk. The same story with loss alone converges by retries.
	s = newStory(t, Config{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultLoss), MaxFaults: 1})
	s.run(0, status(p.StatusCommitting))
	s.run(0, func(w *World) bool { return w.pstate(B) == p.PCommitted })
	s.lose(C, p.OpCommit)
	s.run(2000*ms, nil)
	s.expect("B=committed C=committed")
	s.expectNoViolation()
}

// The same with a coordinator that keeps the decision in memory only: it
// restarts, finds the transaction undecided, presumes abort, and C aborts
// while B committed.
func TestStory2PCWithoutDurableDecisionDiverges(t *testing.T) {
	s := newStory(t, Config{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 1, NoDurableDecision: true})
	s.run(0, status(p.StatusCommitting))
	s.run(0, func(w *World) bool { return w.pstate(B) == p.PCommitted })
	s.crash(coord)
	s.restart(coord)
	s.expectViolation("durability")
	// The explorer finds it too, and nothing with the durable decision.
	r, err := Explore(Config{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 1, NoDurableDecision: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Counterexample == nil {
		t.Fatal("explorer found no counterexample")
	}
	r, _ = Explore(Config{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 1})
	if r.Violations != 0 || r.Blocked == 0 {
		t.Fatalf("durable 2pc: %d violations, %d blocked; want 0 and some", r.Violations, r.Blocked)
	}
}

// 3PC, seed 004: the coordinator pre-commits B and dies before telling C.
// B commits on its timeout, C aborts on its own: divergence.
func TestStory3PCPreCommitOnlyBDiverges(t *testing.T) {
	s := seed004(t, false)
	s.run(1000*ms, nil)
	s.expect("B=committed C=aborted")
	s.expectViolation("agreement")
}

// With Skeen's termination protocol the same crash ends in agreement: B
// asks C, C has not pre-committed, both abort.
func TestStory3PCPreCommitOnlyBWithTermination(t *testing.T) {
	s := seed004(t, true)
	s.run(1000*ms, nil)
	s.expect("B=aborted C=aborted")
	s.expectNoViolation()
	// And the coordinator, back, cannot commit: C refuses the pre-commit.
	s.restart(coord)
	s.run(2000*ms, nil)
	s.expect("B=aborted C=aborted")
	s.expectNoViolation()
	if st := s.w.Coord.Mem.Status; st != p.StatusAborted {
		t.Fatalf("coordinator ended %s", st)
	}
}

func seed004(t *testing.T, termination bool) *story {
	s := newStory(t, Config{Protocol: p.ModeThreePC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 1, Termination: termination})
	s.run(0, status(p.StatusPreCommitting))
	s.run(0, func(w *World) bool { return w.pstate(B) == p.PPreCommitted })
	s.crash(coord)
	s.expect("B=precommitted C=voted")
	return s
}

// Exhaustively: with the termination protocol, coordinator crashes (up to
// two) and any single crash never break agreement. Two crashes can: a
// participant that aborted while answering a peer dies before its answer
// goes out, and the asker, hearing nothing, takes it for crashed and
// commits alone; to the asker a dead peer looks like a partitioned one.
// A partition alone breaks agreement too, and the explorer finds the
// shortest such run.
func TestExplore3PCTermination(t *testing.T) {
	for _, cfg := range []Config{
		{Protocol: p.ModeThreePC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 2, Termination: true, Crashable: []int{coord}},
		{Protocol: p.ModeThreePC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 1, Termination: true},
		{Protocol: p.ModeThreePC, Participants: 3, Faults: FaultSet(FaultCrash), MaxFaults: 1, Termination: true},
	} {
		r, err := Explore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Violations != 0 {
			t.Fatalf("%s: %d violations\n%s", cfg, r.Violations, r.Counterexample.Text())
		}
		t.Logf("%s: %d states, %d settled, %.0f states/s", cfg, r.States, r.Settled, r.StatesPerSecond())
	}
	r, err := Explore(Config{Protocol: p.ModeThreePC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 2, Termination: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Counterexample == nil || strings.Count(r.Counterexample.Text(), "crash") != 2 {
		t.Fatalf("two crashes: want a divergence with two crashes, got %v", r.Counterexample)
	}
	r, err = Explore(Config{Protocol: p.ModeThreePC, Participants: 2, Faults: FaultSet(FaultCrash | FaultPartition), MaxFaults: 1, Termination: true})
	if err != nil {
		t.Fatal(err)
	}
	ce := r.Counterexample
	if ce == nil {
		t.Fatal("with partitions: no counterexample")
	}
	if !strings.Contains(ce.Text(), "partition") || !strings.HasPrefix(ce.Violation, "agreement") {
		t.Fatalf("counterexample without a partition or not about agreement:\n%s", ce.Text())
	}
	t.Logf("shortest divergence with a partition (%d states):\n%s", r.States, ce.Text())
}

// 3PC: a coordinator crash alone (up to two of them, at any point) never
// leaves a participant blocked, with or without the termination protocol;
// 2PC's does.
func TestExploreCoordinatorCrashBlocking(t *testing.T) {
	for _, c := range []struct {
		cfg     Config
		blocked bool
	}{
		{Config{Protocol: p.ModeThreePC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 2, Crashable: []int{coord}}, false},
		{Config{Protocol: p.ModeThreePC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 2, Crashable: []int{coord}, Termination: true}, false},
		{Config{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 1, Crashable: []int{coord}}, true},
		{Config{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 1, Crashable: []int{coord}, Termination: true}, true},
	} {
		r, err := Explore(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Blocked > 0; got != c.blocked {
			t.Errorf("%s: %d blocked states, want blocked=%v", c.cfg, r.Blocked, c.blocked)
		}
		if c.cfg.Protocol == p.ModeThreePC && r.MaxLocked > decisionTimeout+askTimeout {
			t.Errorf("%s: a participant held locks %dms", c.cfg, r.MaxLocked/ms)
		}
	}
}

// Sagas and TCC settle all applied or all undone under crashes, loss and
// duplicates; 2PC with its durable decision never breaks an invariant
// under crashes and loss.
func TestExploreOtherProtocols(t *testing.T) {
	for _, cfg := range []Config{
		{Protocol: p.ModeSaga, Participants: 2, Faults: FaultSet(FaultCrash | FaultLoss | FaultDup), MaxFaults: 2, Votes: []bool{true, false}},
		{Protocol: p.ModeSaga, Participants: 2, Faults: FaultSet(FaultCrash | FaultLoss), MaxFaults: 2},
		{Protocol: p.ModeTCC, Participants: 2, Faults: FaultSet(FaultCrash | FaultLoss | FaultDup), MaxFaults: 2},
		{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultCrash | FaultLoss), MaxFaults: 2},
		{Protocol: p.ModeTwoPC, Participants: 2, Faults: FaultSet(FaultCrash), MaxFaults: 1, Votes: []bool{true, false}},
	} {
		r, err := Explore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Violations != 0 {
			t.Errorf("%s: %d violations\n%s", cfg, r.Violations, r.Counterexample.Text())
		}
		if r.Settled == 0 || r.Truncated {
			t.Errorf("%s: settled %d, truncated %v", cfg, r.Settled, r.Truncated)
		}
	}
}
