package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/protocol/saga"
)

func runExplore(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := Explore(args, Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
	return out.String() + errOut.String(), err
}

func TestExploreUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--faults", "crash,meteor"},
		{"--protocol", "4pc"},
		{"--participants", "0"},
		{"--protocol", "saga", "--termination"},
		{"--max-faults", "-1"},
		{"--random", "-2"},
		{"extra"},
		{"--no-such-flag"},
		{"--protocol", "saga", "--unsafe-rule", "trust-everyone"},
		{"--protocol", "2pc", "--unsafe-rule", "saga-skip-unsure"},
		{"--protocol", "2pc", "--faults", "slow"},
		{"--protocol", "saga", "--faults", "late"},
	} {
		out, err := runExplore(args...)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%v: got %v, want a usage error (exit 2)\n%s", args, err, out)
		}
	}
	_, err := runExplore("--faults", "crash,meteor")
	if err == nil || !strings.Contains(err.Error(), `unknown fault "meteor"`) {
		t.Errorf("unknown fault message: %v", err)
	}
}

// 3PC with the termination protocol, crashes and partitions: the explorer
// finds the partition divergence and prints it. Finding one is an error
// (exit 1), not a usage error.
func TestExplore3PCCounterexample(t *testing.T) {
	out, err := runExplore("--protocol", "3pc", "--participants", "2", "--faults", "crash,partition", "--max-faults", "1", "--termination")
	if err == nil || errors.Is(err, ErrUsage) {
		t.Fatalf("got %v, want a violation error", err)
	}
	for _, want := range []string{"states explored", "violations found", "blocked runs", "states/s", "shortest counterexample", "  1. ", "partition", "violation: agreement", "```mermaid\nsequenceDiagram"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestExplore2PCBlockedAndJSON(t *testing.T) {
	out, err := runExplore("--protocol", "2pc", "--faults", "crash", "--max-faults", "1", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res struct {
		States     int `json:"states"`
		Violations int `json:"violations"`
		Blocked    int `json:"blocked"`
		BlockedRun *struct {
			Steps []struct{ Action string } `json:"steps"`
		} `json:"blocked_run"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.States == 0 || res.Violations != 0 || res.Blocked == 0 || res.BlockedRun == nil {
		t.Errorf("2pc under crashes: %+v", res)
	}
}

func TestExploreRandomSeed(t *testing.T) {
	args := []string{"--protocol", "3pc", "--participants", "3", "--faults", "crash", "--random", "300", "--seed", "1"}
	out, err := runExplore(args...)
	if err == nil || !strings.Contains(out, "random runs") || !strings.Contains(out, "replay: -seed") {
		t.Fatalf("%v\n%s", err, out)
	}
	i := strings.Index(out, "seed ")
	var seed string
	for _, f := range strings.Fields(out[i:]) {
		if f != "seed" {
			seed = strings.Trim(f, ",")
			break
		}
	}
	again, err2 := runExplore("--protocol", "3pc", "--participants", "3", "--faults", "crash", "--random", "1", "--seed", seed)
	if err2 == nil {
		t.Fatalf("seed %s does not fail again:\n%s", seed, again)
	}
	strip := func(s string) string { return s[strings.Index(s, "shortest counterexample"):] }
	if !strings.Contains(again, "shortest counterexample") || strip(again) != strip(out) {
		t.Errorf("seed %s replays differently:\n%s\n---\n%s", seed, out, again)
	}
}

// The lost-money run: with the rule off, the slow and late faults end a
// saga aborted with B's action applied, and the output says, before
// anything else, that the run was unsafe. With the rule on the same bounds
// hold nothing, and the warning is absent.
func TestExploreSagaUnsafeRule(t *testing.T) {
	args := []string{"--protocol", "saga", "--faults", "slow,late", "--max-faults", "2"}
	out, err := runExplore(append(args, "--unsafe-rule", "saga-skip-unsure")...)
	if err == nil || errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "unsafe rule saga-skip-unsure") {
		t.Fatalf("got %v, want a violation error naming the unsafe rule\n%s", err, out)
	}
	if !saga.CompensateUnsure {
		t.Fatal("the rule stayed off after the run")
	}
	if !strings.HasPrefix(out, "!!! UNSAFE RULE saga-skip-unsure") {
		t.Errorf("output does not start with the warning:\n%s", out)
	}
	for _, want := range []string{"UNSAFE: a rejected action after an unknown outcome is not compensated", "shortest counterexample (6 steps)",
		"deliver slowly TM → B: action", "refuse the retry", "B finishes the slow action", "violation: atomicity: the saga aborted but B's action is still applied",
		"Note over B: the slow action lands: applied"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = runExplore(args...)
	if err != nil || strings.Contains(out, "UNSAFE") || !regexp.MustCompile(`violations found +0\n`).MatchString(out) {
		t.Fatalf("with the rule: %v\n%s", err, out)
	}
}

// With -json the warning goes to stderr and the JSON names the rule.
func TestExploreSagaUnsafeRuleJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	err := Explore([]string{"--protocol", "saga", "--faults", "slow,late", "--max-faults", "2", "--unsafe-rule", "saga-skip-unsure", "--json"},
		Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
	if err == nil {
		t.Fatalf("no violation\n%s", out.String())
	}
	var res struct {
		UnsafeRules    []string `json:"unsafe_rules"`
		Violations     int      `json:"violations"`
		Counterexample *struct {
			Violation string `json:"violation"`
		} `json:"counterexample"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(res.UnsafeRules) != 1 || res.UnsafeRules[0] != "saga-skip-unsure" || res.Violations == 0 || res.Counterexample == nil ||
		!strings.HasPrefix(res.Counterexample.Violation, "atomicity") {
		t.Errorf("%+v\n%s", res, out.String())
	}
	if !strings.Contains(errOut.String(), "UNSAFE RULE saga-skip-unsure") {
		t.Errorf("no warning on stderr: %q", errOut.String())
	}
}
