package proc

import (
	"fmt"
	"strings"
	"testing"
)

// A report as the race detector prints it.
const race = `==================
WARNING: DATA RACE
Write at 0x00c000012345 by goroutine 7:
  github.com/concordtm/concord/internal/coordinator.(*Coordinator).step()
      /src/internal/coordinator/run.go:42 +0x44

Previous read at 0x00c000012345 by goroutine 9:
  github.com/concordtm/concord/internal/coordinator.(*Coordinator).Get()
      /src/internal/coordinator/get.go:17 +0x3c
==================`

func TestCheckOutput(t *testing.T) {
	clean := "concord listening on http://127.0.0.1:1234\ntime=... level=WARN msg=\"branch failed\" err=\"recovered panic: boom\"\n"
	if got := CheckOutput(clean); got != "" {
		t.Errorf("a clean log: %q, want nothing", got)
	}
	two := clean + race + "\n" + strings.Replace(race, "step", "commit", 1) + "\nmore log\n"
	got := CheckOutput(two)
	if !strings.HasPrefix(got, "logged 2 data race(s):\n") || !strings.Contains(got, "(*Coordinator).step()") ||
		!strings.Contains(got, "(*Coordinator).commit()") || strings.Contains(got, "more log") || strings.Contains(got, "listening") {
		t.Errorf("two races: got\n%s\nwant both reports whole and nothing else", got)
	}
	cut := clean + race[:len(race)/2] // killed in the middle of a report
	if got := CheckOutput(cut); !strings.Contains(got, "logged 1 data race(s)") || !strings.Contains(got, "Write at") {
		t.Errorf("a report cut short: got\n%s", got)
	}
	panicked := clean + "panic: runtime error: index out of range\n\ngoroutine 1 [running]:\nmain.main()\n"
	if got := CheckOutput(panicked); got != "crashed:\npanic: runtime error: index out of range\n\ngoroutine 1 [running]:\nmain.main()\n" {
		t.Errorf("a panic: got %q", got)
	}
	fatal := race + "\nfatal error: concurrent map writes\n"
	if got := CheckOutput(fatal); !strings.Contains(got, "data race") || !strings.Contains(got, "and crashed:\nfatal error: concurrent map writes") {
		t.Errorf("a race and a fatal error: got\n%s", got)
	}
	var many strings.Builder
	for range maxReports + 2 {
		many.WriteString(race + "\n")
	}
	if got := CheckOutput(many.String()); strings.Count(got, "WARNING: DATA RACE") != maxReports || !strings.Contains(got, "... and 2 more") {
		t.Errorf("%d races: got\n%s", maxReports+2, got)
	}
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// CheckLog fails the test once per process, with the report, however
// often it is called (by the test and by Start's cleanup).
func TestCheckLogOnce(t *testing.T) {
	s := &Server{args: []string{"serve"}, pid: 42, stderr: &syncBuffer{}}
	rec := &recorder{TB: t}
	check := func() { s.CheckLog(rec) }
	check()
	if len(rec.errs) != 0 {
		t.Fatalf("empty log: %q", rec.errs)
	}
	s.stderr.Write([]byte(race + "\n"))
	check()
	check()
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "concord serve (pid 42) logged 1 data race(s)") || !strings.Contains(rec.errs[0], "Previous read at") {
		t.Errorf("errors %q, want one quoting the race", rec.errs)
	}
}
