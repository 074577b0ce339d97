//go:build failpoints

package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Enabled reports whether this binary was built with the failpoint hook.
const Enabled = true

var (
	enabled atomic.Bool
	mu      sync.Mutex
	armed   map[string]*point
)

type point struct {
	at   int64
	hits atomic.Int64
}

func init() { Arm(os.Getenv("CONCORD_FAILPOINTS")) }

// Arm replaces the armed set from a spec like "after-accept@3,after-decision".
func Arm(spec string) {
	mu.Lock()
	defer mu.Unlock()
	armed = map[string]*point{}
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, n, _ := strings.Cut(f, "@")
		at, err := strconv.ParseInt(n, 10, 64)
		if err != nil || at < 1 {
			at = 1
		}
		armed[name] = &point{at: at}
	}
	enabled.Store(len(armed) > 0)
}

// Hit marks that the code reached the named point, and kills the process
// if that point is armed for this hit.
func Hit(name string) {
	if !enabled.Load() {
		return
	}
	mu.Lock()
	p := armed[name]
	mu.Unlock()
	if p == nil {
		return
	}
	if p.hits.Add(1) == p.at {
		os.Stderr.WriteString("failpoint: " + name + ": SIGKILL\n")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns
	}
}
