package sim

import (
	"fmt"
	"strings"
	"time"

	p "github.com/concordtm/concord/internal/protocol"
)

// Step is one step of a trace.
type Step struct {
	N      int
	Time   int64 // virtual ns
	Action string
	After  string // the participants' and the coordinator's states after it
	events []event
}

// Trace is a run, step by step, and what went wrong at its end (if
// anything).
type Trace struct {
	Config    Config
	Steps     []Step
	Violation string
	Blocked   bool
	actions   []Action
}

// Replay runs actions from the start and records each step.
func Replay(cfg Config, actions []Action) *Trace {
	w := newWorld(&cfg)
	tr := &Trace{Config: cfg, actions: actions}
	tr.Steps = append(tr.Steps, Step{N: 0, Time: 0, Action: "submit", After: w.summary()})
	for i, a := range actions {
		desc := w.describe(a)
		w = w.apply(a)
		tr.Steps = append(tr.Steps, Step{N: i + 1, Time: w.Now, Action: desc, After: w.summary(), events: w.events})
	}
	tr.Violation = w.Violation
	if tr.Violation == "" && w.allUp() {
		tr.Violation = w.settledCheck()
	}
	tr.Blocked = w.quiet(w.enabled()) && w.blocked()
	return tr
}

// summary renders the nodes' states on one line.
func (w *World) summary() string {
	var parts []string
	st := string(w.Coord.Mem.Status)
	if !w.Coord.Up {
		st = "down"
	}
	parts = append(parts, "TM="+st)
	for i := 1; i < len(w.Parts); i++ {
		s := string(w.pstate(i))
		if w.Parts[i].Working != 0 {
			s += "+working"
		}
		if !w.Parts[i].Up {
			s = "down(" + s + ")"
		}
		parts = append(parts, nodeName(i)+"="+s)
	}
	return strings.Join(parts, " ")
}

// Text renders the trace as a numbered step list.
func (t *Trace) Text() string {
	var sb strings.Builder
	for _, s := range t.Steps {
		fmt.Fprintf(&sb, "%3d. [%6s] %-60s %s\n", s.N, time.Duration(s.Time), s.Action, s.After)
	}
	switch {
	case t.Violation != "":
		fmt.Fprintf(&sb, "violation: %s\n", t.Violation)
	case t.Blocked:
		sb.WriteString("blocked: a participant holds its locks without knowing the outcome until a crashed node restarts or the partition heals\n")
	}
	return sb.String()
}

// Mermaid renders the trace as a Mermaid sequence diagram.
func (t *Trace) Mermaid() string {
	var sb strings.Builder
	sb.WriteString("sequenceDiagram\n    participant TM as Coordinator\n")
	for i := 1; i <= t.Config.Participants; i++ {
		fmt.Fprintf(&sb, "    participant %s\n", nodeName(i))
	}
	all := "TM"
	if t.Config.Participants > 0 {
		all += "," + nodeName(t.Config.Participants)
	}
	for _, s := range t.Steps {
		for _, e := range s.events {
			switch e.Kind {
			case "msg":
				arrow := "->>"
				if e.From != coord && e.To == coord {
					arrow = "-->>"
				}
				fmt.Fprintf(&sb, "    %s%s%s: %s\n", nodeName(e.From), arrow, nodeName(e.To), e.Text)
			case "lost":
				fmt.Fprintf(&sb, "    %s-x%s: %s\n", nodeName(e.From), nodeName(e.To), e.Text)
			case "note":
				over := all
				if e.From >= 0 {
					over = nodeName(e.From)
				}
				fmt.Fprintf(&sb, "    Note over %s: %s (%s)\n", over, e.Text, time.Duration(s.Time))
			}
		}
	}
	if t.Violation != "" {
		fmt.Fprintf(&sb, "    Note over %s: %s\n", all, strings.ReplaceAll(t.Violation, ";", ","))
	}
	return sb.String()
}

// Final returns the participants' states at the end of the trace.
func (t *Trace) Final() []p.PState {
	w := newWorld(&t.Config)
	for _, a := range t.actions {
		w = w.apply(a)
	}
	out := make([]p.PState, 0, t.Config.Participants)
	for i := 1; i <= t.Config.Participants; i++ {
		out = append(out, w.pstate(i))
	}
	return out
}
