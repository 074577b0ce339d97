package proc

import (
	"fmt"
	"strings"
)

// raceBanner starts and ends each report of the race detector.
const raceBanner = "=================="

// maxReports bounds how many race reports CheckOutput quotes.
const maxReports = 5

// CheckOutput looks for a data race, a panic or a fatal error in the log
// (stderr) of a child process built from this module, and returns a
// failure message quoting them, or "" if there are none. Races come first,
// each report whole (at most maxReports of them); a panic or fatal error
// is quoted from its first line to the end of the log, with the goroutine
// dump.
func CheckOutput(log string) string {
	races := raceReports(log)
	var b strings.Builder
	if len(races) > 0 {
		fmt.Fprintf(&b, "logged %d data race(s):\n", len(races))
		for i, r := range races {
			if i == maxReports {
				fmt.Fprintf(&b, "... and %d more\n", len(races)-maxReports)
				break
			}
			b.WriteString(r)
			b.WriteString("\n")
		}
	}
	if crash := crashReport(log); crash != "" {
		if b.Len() > 0 {
			b.WriteString("and ")
		}
		b.WriteString("crashed:\n")
		b.WriteString(crash)
	}
	return b.String()
}

// raceReports returns each "WARNING: DATA RACE" report in log, from the
// banner before it to the banner after it (or the end of the log, for a
// report cut short by a kill).
func raceReports(log string) []string {
	var out []string
	rest := log
	for {
		i := strings.Index(rest, "WARNING: DATA RACE")
		if i < 0 {
			return out
		}
		start := strings.LastIndex(rest[:i], raceBanner)
		if start < 0 {
			start = i
		}
		end := len(rest)
		if j := strings.Index(rest[i:], raceBanner); j >= 0 {
			end = i + j + len(raceBanner)
		}
		out = append(out, rest[start:end])
		rest = rest[end:]
	}
}

// crashReport returns log from the first line that starts with "panic:"
// or "fatal error:" (how the runtime reports a crash) to its end, or "".
func crashReport(log string) string {
	off := 0
	for line := range strings.Lines(log) {
		if strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:") {
			return log[off:]
		}
		off += len(line)
	}
	return ""
}
