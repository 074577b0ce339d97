package protocol_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	p "github.com/concordtm/concord/internal/protocol"
)

const docPath = "../../docs/state-machines.md"

// stateMachinesDoc is docs/state-machines.md as the tables dictate it.
func stateMachinesDoc() string {
	var sb strings.Builder
	sb.WriteString(`# Concord state machines

<!-- Generated from the transition tables in internal/protocol by
     TestStateMachinesDoc. Do not edit by hand; regenerate with
     go test ./internal/protocol -run TestStateMachinesDoc -rewrite -->

Every transaction mode is a pure state machine: ` + "`Step(txn, event)`" + ` returns the
new state and the effects the coordinator must carry out (Persist first,
then Call, Arm, Report, Alert). Each mode's behaviour is a table of
transitions: in a status of *From*, an event *On* leads to one of the
statuses in *To*. An event with no row is refused with an error wrapping
` + "`protocol.ErrInvalidTransition`" + `.

Statuses: ` + "`running`" + ` (a saga runs its actions, a TCC is trying, a 2PC
prepares and counts votes, a 3PC asks can-commit), ` + "`precommitting`" + ` (a 3PC
sends pre-commit and counts acknowledgements), ` + "`confirming`" + `, ` + "`compensating`" + `, ` + "`cancelling`" + `,
` + "`committing`" + ` (a 2PC or 3PC decided commit and sends it), the final ` + "`succeeded`" + ` and
` + "`aborted`" + `, and ` + "`stuck`" + ` (a phase kept failing past its retry budget; an
operator retry resumes it). ` + "`[*]`" + ` is the start (before the first event)
and the end.
`)
	for _, m := range machines {
		fmt.Fprintf(&sb, "\n## %s\n\n```mermaid\n%s```\n\n", strings.ToUpper(string(m.Mode)), p.Mermaid(m))
		sb.WriteString("| From | On | To |\n|---|---|---|\n")
		for _, tr := range m.Table {
			fmt.Fprintf(&sb, "| %s | %s | %s |\n", statusList(tr.From), tr.On, statusList(tr.To))
		}
	}
	return sb.String()
}

func statusList(ss []p.Status) string {
	var out []string
	for _, s := range ss {
		if s == p.StatusNew {
			out = append(out, "new")
		} else {
			out = append(out, string(s))
		}
	}
	return strings.Join(out, ", ")
}

// TestStateMachinesDoc keeps docs/state-machines.md in step with the
// tables; -rewrite regenerates it.
func TestStateMachinesDoc(t *testing.T) {
	want := stateMachinesDoc()
	if *rewrite {
		if err := os.WriteFile(filepath.FromSlash(docPath), []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(filepath.FromSlash(docPath))
	if err != nil {
		t.Fatalf("%v (generate it with -rewrite)", err)
	}
	if string(got) != want {
		t.Errorf("%s is out of date with the transition tables; run go test ./internal/protocol -run TestStateMachinesDoc -rewrite", docPath)
	}
}

// TestMermaid checks the diagram's shape on a small table.
func TestMermaid(t *testing.T) {
	m := &p.Machine{Mode: "toy", Table: []p.Transition{
		{From: []p.Status{p.StatusNew}, On: p.EvSubmit, To: []p.Status{p.StatusRunning}},
		{From: []p.Status{p.StatusRunning}, On: p.EvResult, To: []p.Status{p.StatusRunning, p.StatusSucceeded}},
		{From: []p.Status{p.StatusRunning}, On: p.EvTick, To: []p.Status{p.StatusSucceeded}},
	}}
	want := `stateDiagram-v2
    [*] --> running: submit
    running --> running: result
    running --> succeeded: result, tick
    succeeded --> [*]
`
	if got := p.Mermaid(m); got != want {
		t.Errorf("Mermaid:\n%s\nwant:\n%s", got, want)
	}
	for _, m := range machines {
		d := p.Mermaid(m)
		for _, tr := range m.Table {
			if !strings.Contains(d, string(tr.On)) {
				t.Errorf("%s diagram lacks event %q", m.Mode, tr.On)
			}
		}
	}
}
