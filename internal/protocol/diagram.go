package protocol

import (
	"fmt"
	"slices"
	"strings"
)

// Mermaid renders m's transition table as a Mermaid stateDiagram-v2. Each
// arrow is a (from, to) pair of some row, labelled with the events that
// can take it; the start is StatusNew, and final statuses lead to the end.
// The output is deterministic (table order), so it can be checked in.
func Mermaid(m *Machine) string {
	type edge struct{ from, to string }
	var order []edge
	labels := map[edge][]string{}
	var finals []string
	name := func(s Status) string {
		if s == StatusNew {
			return "[*]"
		}
		if s.Final() && !slices.Contains(finals, string(s)) {
			finals = append(finals, string(s))
		}
		return string(s)
	}
	for _, tr := range m.Table {
		for _, from := range tr.From {
			for _, to := range tr.To {
				e := edge{name(from), name(to)}
				if _, ok := labels[e]; !ok {
					order = append(order, e)
				}
				if !slices.Contains(labels[e], string(tr.On)) {
					labels[e] = append(labels[e], string(tr.On))
				}
			}
		}
	}
	var sb strings.Builder
	sb.WriteString("stateDiagram-v2\n")
	for _, e := range order {
		fmt.Fprintf(&sb, "    %s --> %s: %s\n", e.from, e.to, strings.Join(labels[e], ", "))
	}
	for _, f := range finals {
		fmt.Fprintf(&sb, "    %s --> [*]\n", f)
	}
	return sb.String()
}
