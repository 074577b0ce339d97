// Package failpoint provides named crash points for crash-recovery tests.
//
// A test starts the real coordinator binary with CONCORD_FAILPOINTS set to a
// comma-separated list of names, each optionally followed by "@N" to fire on
// the N-th hit (default 1). When the running code reaches an armed point for
// that hit, the process kills itself with SIGKILL: no deferred function, no
// flush, exactly like kill -9 or a power cut seen from the process.
//
// With the variable unset, Hit is a single atomic load.
package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Named points used by the coordinator.
const (
	AfterAccept        = "after-accept"        // a submission is durable, no branch called yet
	BetweenBranches    = "between-branches"    // a forward result is in (not written: a saga defers it), the next branch not called
	BeforeDecision     = "before-decision"     // a step just decided (2PC: every vote is in), nothing of it written
	AfterDecision      = "after-decision"      // an abort/commit decision is durable, no participant told
	DuringCompensation = "during-compensation" // one compensation/cancel done, others pending
	BeforeCommitSync   = "before-commit-sync"  // a batch is handed to the store, not yet durable
)

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
