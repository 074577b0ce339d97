// Package failpoint provides named crash points for crash-recovery tests.
//
// A test starts the real coordinator binary with CONCORD_FAILPOINTS set to a
// comma-separated list of names, each optionally followed by "@N" to fire on
// the N-th hit (default 1). When the running code reaches an armed point for
// that hit, the process kills itself with SIGKILL: no deferred function, no
// flush, exactly like kill -9 or a power cut seen from the process.
//
// The hook exists only in binaries built with the build tag failpoints
// (go build -tags failpoints; internal/testenv/proc builds the binary for
// end-to-end and crash tests so). A release build, without the tag,
// ignores CONCORD_FAILPOINTS: Arm and Hit do nothing and Enabled is false.
//
// With the variable unset, Hit is a single atomic load.
package failpoint

// Named points used by the coordinator.
const (
	AfterAccept        = "after-accept"        // a submission is durable, no branch called yet
	BetweenBranches    = "between-branches"    // a forward result is in (not written: a saga defers it), the next branch not called
	BeforeDecision     = "before-decision"     // a step just decided (2PC: every vote is in), nothing of it written
	AfterDecision      = "after-decision"      // an abort/commit decision is durable, no participant told
	DuringCompensation = "during-compensation" // one compensation/cancel done, others pending
	BeforeCommitSync   = "before-commit-sync"  // a batch is handed to the store, not yet durable
)
