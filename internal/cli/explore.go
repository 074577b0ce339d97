package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/sim"
)

// Explore runs `concord explore`: the simulator's exhaustive exploration
// (or, with -random N, N seeded random runs) of one protocol under a
// budget of faults. It prints a summary and the shortest counterexample.
// Finding a violation is an error (exit status 1), so that scripts can
// tell. -unsafe-rule turns a safety rule off for the run, to show what it
// prevents; the output says so first.
func Explore(args []string, env Env) error {
	fs := newFlags("explore", env)
	proto := fs.String("protocol", "3pc", "protocol: 2pc, 3pc, saga or tcc")
	n := fs.Int("participants", 2, "number of participants (1 to 8; the explorer is practical up to 3)")
	faults := fs.String("faults", "crash", "faults to inject, comma-separated: "+sim.FaultNames()+" (or none); slow and late are for sagas")
	maxFaults := fs.Int("max-faults", 1, "at most this many faults per run")
	termination := fs.Bool("termination", false, "participants run the termination protocol (2pc: cooperative; 3pc: Skeen's)")
	noDurable := fs.Bool("no-durable-decision", false, "the coordinator keeps its commit decision in memory only")
	seed := fs.Uint64("seed", 1, "first seed of the random runs (-random); replay a failing run with its seed and -random 1")
	random := fs.Int("random", 0, "make this many seeded random runs instead of exploring every state")
	maxStates := fs.Int("max-states", 0, "stop exploring after this many states (default 2,000,000)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	unsafeRule := fs.String("unsafe-rule", "", "UNSAFE: turn a safety rule off for this run, to show what it prevents: "+skipUnsure+" (sagas: a rejected action whose earlier call had an unknown outcome is not compensated)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("explore: unexpected argument %q", fs.Arg(0))
	}
	set, err := sim.ParseFaults(*faults)
	if err != nil {
		return usageError("explore: -faults: %v", err)
	}
	if *random < 0 {
		return usageError("explore: -random %d: want 0 or more", *random)
	}
	cfg := sim.Config{
		Protocol: protocol.Mode(*proto), Participants: *n, Faults: set, MaxFaults: *maxFaults,
		Termination: *termination, NoDurableDecision: *noDurable, MaxStates: *maxStates,
	}
	switch *unsafeRule {
	case "":
	case skipUnsure:
		cfg.SkipUnsure = true
	default:
		return usageError("explore: -unsafe-rule %q: the only rule that can be turned off is %s", *unsafeRule, skipUnsure)
	}
	if *noDurable && cfg.Protocol != protocol.ModeTwoPC && cfg.Protocol != protocol.ModeThreePC {
		return usageError("explore: -no-durable-decision is for 2pc and 3pc")
	}
	if err := cfg.Validate(); err != nil {
		return usageError("explore: %v", err)
	}
	if cfg.SkipUnsure {
		// Loudly, first; with -json on stderr, so that stdout stays JSON
		// (which lists the rule in unsafe_rules).
		if *asJSON {
			fmt.Fprint(env.Stderr, unsafeWarning)
		} else {
			fmt.Fprint(env.Stdout, unsafeWarning)
		}
	}
	var res *sim.Result
	if *random > 0 {
		res, err = sim.RandomRuns(cfg, *seed, *random)
	} else {
		res, err = sim.Explore(cfg)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(jsonResult(res, *random > 0)); err != nil {
			return err
		}
	} else {
		printResult(env, res, *random > 0)
	}
	if res.Violations > 0 {
		if cfg.SkipUnsure {
			return fmt.Errorf("%d invariant violations with the unsafe rule %s (shortest counterexample above)", res.Violations, skipUnsure)
		}
		return fmt.Errorf("%d invariant violations (shortest counterexample above)", res.Violations)
	}
	return nil
}

// skipUnsure is the -unsafe-rule value that sets saga.CompensateUnsure off.
const skipUnsure = "saga-skip-unsure"

const unsafeWarning = `!!! UNSAFE RULE saga-skip-unsure: for this run, saga.CompensateUnsure is OFF.
!!! A saga action that is refused after an earlier call of unknown outcome
!!! (a timeout) is taken as never done and NOT compensated: the bug fixed in
!!! d215ef5, brought back to show what the rule prevents. Concord itself
!!! never runs this way.

`

func printResult(env Env, res *sim.Result, random bool) {
	out := env.Stdout
	fmt.Fprintf(out, "%s\n\n", res.Config)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	if random {
		fmt.Fprintf(tw, "random runs\t%d\n", res.Runs)
		fmt.Fprintf(tw, "steps\t%d\n", res.Transitions)
	} else {
		fmt.Fprintf(tw, "states explored\t%d\n", res.States)
		fmt.Fprintf(tw, "transitions\t%d\n", res.Transitions)
		fmt.Fprintf(tw, "settled states\t%d\n", res.Settled)
	}
	fmt.Fprintf(tw, "violations found\t%d\n", res.Violations)
	fmt.Fprintf(tw, "blocked runs\t%d\n", res.Blocked)
	fmt.Fprintf(tw, "longest lock hold (virtual)\t%s\n", time.Duration(res.MaxLocked))
	fmt.Fprintf(tw, "time\t%s\n", res.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(tw, "states/s\t%.0f\n", res.StatesPerSecond())
	if res.Truncated {
		fmt.Fprintf(tw, "truncated\tyes (raise -max-states)\n")
	}
	tw.Flush()
	if ce := res.Counterexample; ce != nil {
		fmt.Fprintf(out, "\nshortest counterexample (%d steps)", len(ce.Steps)-1)
		if random {
			fmt.Fprintf(out, ", seed %d (replay: -seed %d -random 1)", res.FailedSeed, res.FailedSeed)
		}
		fmt.Fprintf(out, ":\n\n%s\n```mermaid\n%s```\n", ce.Text(), ce.Mermaid())
	} else if b := res.BlockedRun; b != nil {
		fmt.Fprintf(out, "\nshortest blocked run (%d steps):\n\n%s\n```mermaid\n%s```\n", len(b.Steps)-1, b.Text(), b.Mermaid())
	}
}

type jsonStep struct {
	N      int    `json:"n"`
	TimeNS int64  `json:"time_ns"`
	Action string `json:"action"`
	After  string `json:"after"`
}

type jsonTrace struct {
	Steps     []jsonStep `json:"steps"`
	Violation string     `json:"violation,omitempty"`
	Blocked   bool       `json:"blocked,omitempty"`
	Mermaid   string     `json:"mermaid"`
}

type jsonOut struct {
	Config          string     `json:"config"`
	Mode            string     `json:"mode"`
	States          int        `json:"states"`
	Transitions     int        `json:"transitions"`
	Settled         int        `json:"settled,omitempty"`
	Runs            int        `json:"runs,omitempty"`
	Violations      int        `json:"violations"`
	Blocked         int        `json:"blocked"`
	MaxLockedNS     int64      `json:"max_locked_ns"`
	ElapsedNS       int64      `json:"elapsed_ns"`
	StatesPerSecond float64    `json:"states_per_second"`
	Truncated       bool       `json:"truncated,omitempty"`
	UnsafeRules     []string   `json:"unsafe_rules,omitempty"`
	FailedSeed      uint64     `json:"failed_seed,omitempty"`
	Counterexample  *jsonTrace `json:"counterexample,omitempty"`
	BlockedRun      *jsonTrace `json:"blocked_run,omitempty"`
}

func jsonResult(res *sim.Result, random bool) jsonOut {
	mode := "explore"
	if random {
		mode = "random"
	}
	tr := func(t *sim.Trace) *jsonTrace {
		if t == nil {
			return nil
		}
		j := &jsonTrace{Violation: t.Violation, Blocked: t.Blocked, Mermaid: t.Mermaid()}
		for _, s := range t.Steps {
			j.Steps = append(j.Steps, jsonStep{N: s.N, TimeNS: s.Time, Action: s.Action, After: s.After})
		}
		return j
	}
	var unsafe []string
	if res.Config.SkipUnsure {
		unsafe = append(unsafe, skipUnsure)
	}
	return jsonOut{
		Config: res.Config.String(), Mode: mode, States: res.States, Transitions: res.Transitions,
		Settled: res.Settled, Runs: res.Runs, Violations: res.Violations, Blocked: res.Blocked,
		MaxLockedNS: res.MaxLocked, ElapsedNS: int64(res.Elapsed), StatesPerSecond: res.StatesPerSecond(),
		Truncated: res.Truncated, FailedSeed: res.FailedSeed,
		Counterexample: tr(res.Counterexample), BlockedRun: tr(res.BlockedRun), UnsafeRules: unsafe,
	}
}
