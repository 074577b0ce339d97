package sim

import (
	"flag"
	"testing"

	p "github.com/concordtm/concord/internal/protocol"
)

var seedFlag = flag.Uint64("seed", 0, "replay one seed of TestRandomRuns")

// Larger systems than the explorer can cover, at random. A failing run
// prints its seed; -seed replays it with its trace.
func TestRandomRuns(t *testing.T) {
	cfgs := []Config{
		{Protocol: p.ModeTwoPC, Participants: 4, Faults: FaultSet(FaultCrash | FaultLoss | FaultDup | FaultReorder), MaxFaults: 4},
		{Protocol: p.ModeSaga, Participants: 4, Faults: FaultSet(FaultCrash | FaultLoss | FaultDup), MaxFaults: 4, Votes: []bool{true, true, false, true}},
		{Protocol: p.ModeSaga, Participants: 3, Faults: FaultSet(FaultCrash | FaultLoss | FaultSlow | FaultLate), MaxFaults: 4},
		{Protocol: p.ModeTCC, Participants: 4, Faults: FaultSet(FaultCrash | FaultLoss | FaultDup), MaxFaults: 4},
		{Protocol: p.ModeThreePC, Participants: 4, Faults: FaultSet(FaultCrash), MaxFaults: 1, Termination: true, Crashable: []int{coord}},
	}
	if *seedFlag != 0 {
		for _, cfg := range cfgs {
			tr := RandomRun(cfg, *seedFlag)
			t.Logf("%s, seed %d:\n%s", cfg, *seedFlag, tr.Text())
		}
		return
	}
	for _, cfg := range cfgs {
		r, err := RandomRuns(cfg, 1, 150)
		if err != nil {
			t.Fatal(err)
		}
		if r.Counterexample != nil {
			t.Fatalf("%s: seed %d: %s\nreplay with: go test ./internal/sim -run TestRandomRuns -seed %d -v\n%s",
				cfg, r.FailedSeed, r.Counterexample.Violation, r.FailedSeed, r.Counterexample.Text())
		}
	}
}

// A failing random run is found, and its seed replays it exactly.
func TestRandomRunReplays(t *testing.T) {
	cfg := Config{Protocol: p.ModeThreePC, Participants: 3, Faults: FaultSet(FaultCrash), MaxFaults: 1, Crashable: []int{coord}}
	r, err := RandomRuns(cfg, 1, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if r.Counterexample == nil {
		t.Fatalf("no divergence in %d runs of 3pc without termination", r.Runs)
	}
	again := RandomRun(cfg, r.FailedSeed)
	if again.Text() != r.Counterexample.Text() {
		t.Fatalf("seed %d does not replay:\n%s\n---\n%s", r.FailedSeed, r.Counterexample.Text(), again.Text())
	}
	t.Logf("seed %d (run %d): %s", r.FailedSeed, r.Runs, again.Violation)
}
