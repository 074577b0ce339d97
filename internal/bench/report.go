package bench

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteText prints r for a person.
func WriteText(w io.Writer, r Result) error {
	_, err := fmt.Fprintf(w, `mode          %s, concurrency %d, %gs measured after %gs warm-up
coordinator   %s
host          %s
transactions  %d succeeded, %d errors
throughput    %.1f transactions/s
latency (ms)  p50 %.2f   p90 %.2f   p99 %.2f   max %.2f
%s`,
		r.Mode, r.Concurrency, r.DurationS, r.WarmupS,
		r.Coordinator,
		describeHost(r.Host),
		r.Count, r.Errors,
		r.TPS,
		r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs,
		resources(r))
	if err == nil && r.DashboardPolls > 0 {
		_, err = fmt.Fprintf(w, "dashboard     %d polls (ListTransactions + GET /metrics), %d failed\n", r.DashboardPolls, r.DashboardErrors)
	}
	if err == nil && r.FirstError != "" {
		_, err = fmt.Fprintf(w, "first error   %s\n", r.FirstError)
	}
	return err
}

func resources(r Result) string {
	if r.RSSMB == 0 {
		return "resources     not measured (only for a child coordinator, from /proc)\n"
	}
	cpu := "n/a"
	if r.CPUMsPerTx > 0 {
		cpu = fmt.Sprintf("%.3f ms", r.CPUMsPerTx)
	}
	return fmt.Sprintf("resources     coordinator peak RSS %.1f MiB (anonymous %.1f MiB), CPU %s per transaction\n", r.RSSMB, r.RSSAnonMB, cpu)
}

// WriteJSON prints r as one JSON object on one line.
func WriteJSON(w io.Writer, r Result) error {
	return json.NewEncoder(w).Encode(r)
}

func describeHost(h Host) string {
	model := h.CPUModel
	if model == "" {
		model = "CPU model unknown"
	}
	return fmt.Sprintf("%d CPUs, %s, %s, %s", h.CPUs, model, h.OS, h.Go)
}
