package sim

import (
	"hash/fnv"
	"time"
)

// Result is what an exploration or a batch of random runs found.
type Result struct {
	Config      Config
	States      int   // distinct states explored
	Transitions int   // steps taken
	Violations  int   // states that broke an invariant
	Settled     int   // states where nothing but repairs can happen
	Blocked     int   // settled states in which a live participant holds locks undecided
	MaxLocked   int64 // longest a participant held locks undecided (virtual ns)
	Truncated   bool  // MaxStates was reached
	Elapsed     time.Duration
	// Counterexample is the shortest run to a violation, if any.
	Counterexample *Trace
	// BlockedRun is the shortest run to a blocked settled state, if any.
	BlockedRun *Trace
	// Random runs: how many, and the seed of the first that failed.
	Runs       int
	FailedSeed uint64
}

// StatesPerSecond is the exploration speed.
func (r *Result) StatesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.States) / r.Elapsed.Seconds()
}

type node struct {
	parent *node
	act    Action
	depth  int
}

func (n *node) path() []Action {
	var out []Action
	for ; n != nil && n.parent != nil; n = n.parent {
		out = append(out, n.act)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func hashKey(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// Explore visits every state reachable within the fault budget, breadth
// first, so that the first violation found has the shortest run. States
// are deduplicated by a hash of everything that decides what happens next.
func Explore(cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	res := &Result{Config: cfg}
	w0 := newWorld(&cfg)
	seen := map[uint64]struct{}{hashKey(w0.key()): {}}
	type item struct {
		w *World
		n *node
	}
	queue := []item{{w0, &node{}}}
	var firstViolation, firstBlocked *node
	for len(queue) > 0 {
		it := queue[0]
		queue[0] = item{}
		queue = queue[1:]
		res.States++
		w := it.w
		if w.Violation != "" {
			res.Violations++
			if firstViolation == nil {
				firstViolation = it.n
			}
			continue
		}
		res.MaxLocked = max(res.MaxLocked, w.MaxLocked)
		as := w.enabled()
		if w.quiet(as) {
			res.Settled++
			if w.blocked() {
				res.Blocked++
				if firstBlocked == nil {
					firstBlocked = it.n
				}
			}
			if w.allUp() {
				if v := w.settledCheck(); v != "" {
					res.Violations++
					if firstViolation == nil {
						firstViolation = it.n
					}
					continue
				}
			}
		}
		for _, a := range as {
			nw := w.apply(a)
			res.Transitions++
			k := hashKey(nw.key())
			if _, ok := seen[k]; ok {
				continue
			}
			if len(seen) >= cfg.maxStates() {
				res.Truncated = true
				continue
			}
			seen[k] = struct{}{}
			queue = append(queue, item{nw, &node{parent: it.n, act: a, depth: it.n.depth + 1}})
		}
	}
	res.Elapsed = time.Since(start)
	if firstViolation != nil {
		res.Counterexample = Replay(cfg, firstViolation.path())
	}
	if firstBlocked != nil {
		res.BlockedRun = Replay(cfg, firstBlocked.path())
	}
	return res, nil
}

func (w *World) allUp() bool {
	if !w.Coord.Up || w.Cut != 0 {
		return false
	}
	for i := 1; i < len(w.Parts); i++ {
		if !w.Parts[i].Up {
			return false
		}
	}
	return true
}

// blocked: a live participant holds locks without knowing the outcome,
// and nothing but a repair (a restart, a heal) would change that. Its own
// timers may still be pending past the horizon, so the run is continued
// without faults or repairs, for a while past it, to see.
func (w *World) blocked() bool {
	locked := func(w *World) bool {
		for i := 1; i < len(w.Parts); i++ {
			if w.Parts[i].Up && w.holdsLocks(i) {
				return true
			}
		}
		return false
	}
	if !locked(w) {
		return false
	}
	cfg := *w.cfg
	cfg.Horizon = w.Now + 2*(decisionTimeout+askTimeout)
	c := w.clone()
	c.cfg = &cfg
	for range 1000 {
		next := -1
		as := c.enabled()
		for k, a := range as {
			if a.Kind == aDeliver || a.Kind == aRetry || a.Kind == aTimer && len(c.Net) == 0 {
				next = k
				break
			}
		}
		if next < 0 || c.Violation != "" {
			break
		}
		c = c.apply(as[next])
	}
	return locked(c)
}
