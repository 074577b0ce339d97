package bench

import (
	"bufio"
	"os"
	"runtime"
	"strings"
)

// Host says where a run was measured, so that a report read later (or
// pasted into docs/performance.md) carries the machine with it: figures
// from different hosts do not compare.
type Host struct {
	CPUs     int    `json:"cpus"`                // runtime.NumCPU of the bench process
	CPUModel string `json:"cpu_model,omitempty"` // /proc/cpuinfo "model name", Linux only
	OS       string `json:"os"`                  // GOOS/GOARCH
	Go       string `json:"go"`                  // the Go release the binary was built with
}

func thisHost() Host {
	return Host{
		CPUs:     runtime.NumCPU(),
		CPUModel: cpuModel("/proc/cpuinfo"),
		OS:       runtime.GOOS + "/" + runtime.GOARCH,
		Go:       runtime.Version(),
	}
}

// cpuModel returns the first "model name" of a /proc/cpuinfo file, or ""
// when there is none (another OS, or an architecture that names it
// differently).
func cpuModel(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
