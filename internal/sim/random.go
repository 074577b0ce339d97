package sim

import (
	"math/rand/v2"
	"time"
)

// maxRandomSteps bounds one random run.
const maxRandomSteps = 5000

// RandomRun makes one seeded random run: at every step it picks one of
// the enabled actions (faults with lower odds, while the budget lasts) and
// checks the invariants. The same seed gives the same run.
func RandomRun(cfg Config, seed uint64) *Trace {
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	w := newWorld(&cfg)
	var path []Action
	for range maxRandomSteps {
		as := w.enabled()
		if len(as) == 0 || w.Violation != "" {
			break
		}
		var normal, faults []Action
		for _, a := range as {
			if isFault(w, a) {
				faults = append(faults, a)
			} else {
				normal = append(normal, a)
			}
		}
		var a Action
		switch {
		case len(faults) > 0 && (len(normal) == 0 || rng.IntN(100) < 8):
			a = faults[rng.IntN(len(faults))]
		case len(normal) > 0:
			// Repairs (restart, heal) are rarer than progress, so that a
			// fault has time to matter.
			a = normal[rng.IntN(len(normal))]
			if (a.Kind == aRestart || a.Kind == aHeal) && rng.IntN(4) > 0 && len(normal) > 1 {
				a = normal[rng.IntN(len(normal))]
			}
		}
		if a.Kind == aRestart || a.Kind == aHeal {
			if w.quiet(as) || rng.IntN(3) == 0 {
				// fine
			} else {
				continue
			}
		}
		path = append(path, a)
		w = w.apply(a)
	}
	return Replay(cfg, path)
}

func isFault(w *World, a Action) bool {
	switch a.Kind {
	case aReorder, aDrop, aDup, aCrash, aPartition, aSlow, aLate:
		return true
	case aTimer:
		return len(w.Net) > 0
	}
	return false
}

// RandomRuns makes runs random runs with seeds seed, seed+1, … and stops at
// the first that breaks an invariant.
func RandomRuns(cfg Config, seed uint64, runs int) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	res := &Result{Config: cfg}
	for i := range runs {
		s := seed + uint64(i)
		tr := RandomRun(cfg, s)
		res.Runs++
		res.States += len(tr.Steps)
		res.Transitions += len(tr.Steps) - 1
		if tr.Blocked {
			res.Blocked++
			if res.BlockedRun == nil {
				res.BlockedRun = tr
			}
		}
		if tr.Violation != "" {
			res.Violations++
			res.Counterexample = tr
			res.FailedSeed = s
			break
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}
