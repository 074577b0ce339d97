package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (the kernel exports it
// fixed, whatever its internal HZ).
const clockTicks = 100

// procUsage is what the kernel reports about a process.
type procUsage struct {
	CPU  time.Duration // user + system time so far
	Peak int64         // peak resident set size (VmHWM), bytes
}

// readUsage reads /proc/<pid>/stat and /proc/<pid>/status.
func readUsage(pid int) (procUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procUsage{}, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return procUsage{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procUsage{}, err
	}
	peak, err := parseStatusHWM(status)
	if err != nil {
		return procUsage{}, err
	}
	return procUsage{CPU: cpu, Peak: peak}, nil
}

// parseStatCPU returns utime+stime from the contents of /proc/<pid>/stat.
// The second field, the command name in parentheses, may itself contain
// spaces and parentheses, so fields are counted from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no command field")
	}
	// After ')' come fields 3 (state) onwards; utime and stime are fields
	// 14 and 15.
	f := bytes.Fields(b[i+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("proc stat: %d fields after the command, want more than %d", len(f), stime)
	}
	u, err1 := strconv.ParseUint(string(f[utime]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[stime]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proc stat: utime %q, stime %q: not numbers", f[utime], f[stime])
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// parseStatusHWM returns VmHWM in bytes from the contents of
// /proc/<pid>/status.
func parseStatusHWM(b []byte) (int64, error) { return parseStatusKB(b, "VmHWM") }

// readAnon returns the process's RssAnon in bytes.
func readAnon(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusKB(status, "RssAnon")
}

// parseStatusKB returns the "field: N kB" line of /proc/<pid>/status in
// bytes.
func parseStatusKB(b []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte(field+":"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("proc status: %s %q: want <number> kB", field, bytes.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc status: %s %q: %v", field, f[0], err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("proc status: no %s line", field)
}
