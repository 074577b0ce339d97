package sim

import (
	"fmt"
	"strings"

	p "github.com/concordtm/concord/internal/protocol"
)

// Fault is one kind of failure the scheduler may inject.
type Fault uint8

// Faults.
const (
	FaultCrash     Fault = 1 << iota // a node crashes (and may restart)
	FaultPartition                   // the network splits in two (and may heal)
	FaultLoss                        // a message is lost
	FaultDup                         // a message arrives twice
	FaultReorder                     // a message overtakes an older one on its channel
	FaultDelay                       // a timer fires while messages are in flight
	FaultSlow                        // a saga participant is slower than the call timeout: its action lands later
	FaultLate                        // a saga participant refuses a retry while the slow first call still runs
)

// FaultSet is a set of faults.
type FaultSet uint8

var faultNames = []struct {
	f    Fault
	name string
}{
	{FaultCrash, "crash"}, {FaultPartition, "partition"}, {FaultLoss, "loss"},
	{FaultDup, "dup"}, {FaultReorder, "reorder"}, {FaultDelay, "delay"},
	{FaultSlow, "slow"}, {FaultLate, "late"},
}

// FaultNames lists every fault's name, comma-separated.
func FaultNames() string {
	var out []string
	for _, fn := range faultNames {
		out = append(out, fn.name)
	}
	return strings.Join(out, ", ")
}

// Has reports whether f is in s.
func (s FaultSet) Has(f Fault) bool { return s&FaultSet(f) != 0 }

func (s FaultSet) String() string {
	var out []string
	for _, fn := range faultNames {
		if s.Has(fn.f) {
			out = append(out, fn.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// ParseFaults reads a comma-separated list of fault names ("" or "none"
// is the empty set).
func ParseFaults(list string) (FaultSet, error) {
	var s FaultSet
	if list == "" || list == "none" {
		return 0, nil
	}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, fn := range faultNames {
			if fn.name == name {
				s |= FaultSet(fn.f)
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown fault %q (want some of %s)", name, FaultNames())
		}
	}
	return s, nil
}

// Config describes one simulated system.
type Config struct {
	Protocol     p.Mode
	Participants int
	Faults       FaultSet
	MaxFaults    int
	// Termination turns on the participants' termination protocol
	// (cooperative for 2pc, Skeen's for 3pc).
	Termination bool
	// NoDurableDecision models a coordinator that keeps its commit
	// decision in memory only (the Persist of the decision is dropped).
	NoDurableDecision bool
	// Votes, by participant (nil: every one votes yes).
	Votes []bool
	// Crashable, when set, limits crashes to these nodes (0 is the
	// coordinator).
	Crashable []int
	// Horizon bounds virtual time: no timer beyond it fires (default 2s).
	Horizon int64
	// MaxStates bounds an exploration (default 2,000,000).
	MaxStates int
	// SkipUnsure turns off, for this run only, the saga rule that
	// compensates a rejected action whose earlier call had an unknown
	// outcome (saga.CompensateUnsure). It is unsafe: it brings back the
	// bug the rule fixed, so that the explorer can show it.
	SkipUnsure bool
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch c.Protocol {
	case p.ModeSaga, p.ModeTCC, p.ModeTwoPC, p.ModeThreePC:
	default:
		return fmt.Errorf("unknown protocol %q (want 2pc, 3pc, saga or tcc)", c.Protocol)
	}
	if c.Participants < 1 || c.Participants > 8 {
		return fmt.Errorf("participants %d: want 1 to 8", c.Participants)
	}
	if c.MaxFaults < 0 {
		return fmt.Errorf("max faults %d: want 0 or more", c.MaxFaults)
	}
	if c.Votes != nil && len(c.Votes) != c.Participants {
		return fmt.Errorf("%d votes for %d participants", len(c.Votes), c.Participants)
	}
	if c.Termination && c.Protocol != p.ModeTwoPC && c.Protocol != p.ModeThreePC {
		return fmt.Errorf("the termination protocol is for 2pc and 3pc, not %s", c.Protocol)
	}
	if (c.Faults.Has(FaultSlow) || c.Faults.Has(FaultLate)) && c.Protocol != p.ModeSaga {
		return fmt.Errorf("the slow and late faults are for sagas, not %s", c.Protocol)
	}
	if c.Faults.Has(FaultLate) && !c.Faults.Has(FaultSlow) {
		return fmt.Errorf("the late fault needs slow: a retry is refused while a slow call still runs")
	}
	if c.SkipUnsure && c.Protocol != p.ModeSaga {
		return fmt.Errorf("the saga-skip-unsure rule is for sagas, not %s", c.Protocol)
	}
	return nil
}

func (c *Config) votes() []bool {
	if c.Votes != nil {
		return c.Votes
	}
	v := make([]bool, c.Participants)
	for i := range v {
		v[i] = true
	}
	return v
}

func (c *Config) crashable(i int) bool {
	if c.Crashable == nil {
		return true
	}
	for _, n := range c.Crashable {
		if n == i {
			return true
		}
	}
	return false
}

func (c *Config) horizon() int64 {
	if c.Horizon > 0 {
		return c.Horizon
	}
	return defaultHorizon
}

func (c *Config) maxStates() int {
	if c.MaxStates > 0 {
		return c.MaxStates
	}
	return 2_000_000
}

func (c Config) String() string {
	s := fmt.Sprintf("%s, %d participants, faults %s (at most %d)", c.Protocol, c.Participants, c.Faults, c.MaxFaults)
	if c.Termination {
		s += ", termination protocol"
	}
	if c.NoDurableDecision {
		s += ", decision not durable"
	}
	if c.SkipUnsure {
		s += ", UNSAFE: a rejected action after an unknown outcome is not compensated"
	}
	return s
}
