package protocol_test

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	p "github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/msg"
	"github.com/concordtm/concord/internal/protocol/saga"
	"github.com/concordtm/concord/internal/protocol/tcc"
	"github.com/concordtm/concord/internal/protocol/threepc"
	"github.com/concordtm/concord/internal/protocol/twopc"
)

// This file holds what the script, table, property and fuzz tests share:
// the machines by mode and a stable text rendering of states and effects.

var machines = []*p.Machine{saga.Machine, tcc.Machine, twopc.Machine, threepc.Machine, msg.Machine}

func machineFor(m p.Mode) *p.Machine {
	for _, mc := range machines {
		if mc.Mode == m {
			return mc
		}
	}
	return nil
}

// allStatuses lists every status, StatusNew first. (Later additions go at
// the end, so that the table walk's random draws for the older statuses
// stay as they were.)
var allStatuses = []p.Status{
	p.StatusNew, p.StatusRunning, p.StatusConfirming, p.StatusCompensating,
	p.StatusCancelling, p.StatusSucceeded, p.StatusAborted, p.StatusStuck,
	p.StatusCommitting, p.StatusPreCommitting, p.StatusPrepared, p.StatusDelivering,
}

// allKinds lists every event kind.
var allKinds = []p.EventKind{
	p.EvSubmit, p.EvRegister, p.EvCommit, p.EvRollback, p.EvResult,
	p.EvTick, p.EvRetry, p.EvAbort, p.EvRecover,
}

// testOptions are small, fixed limits for tests.
func testOptions() p.Options {
	return p.Options{
		BranchTimeout:    int64(5 * time.Second),
		MaxAttempts:      3,
		MaxTotalAttempts: 100,
		RetryInitial:     int64(100 * time.Millisecond),
		RetryMax:         int64(time.Second),
	}
}

// fmtTime renders a virtual time (ns since the script's epoch).
func fmtTime(ns int64) string { return time.Duration(ns).String() }

// fmtOp renders one operation: status, attempts, and when it retries.
func fmtOp(o p.OpState) string {
	s := string(o.Status)
	if s == "" {
		s = "-"
	}
	if o.Attempts > 0 {
		s += fmt.Sprintf("#%d", o.Attempts)
	}
	if o.Tries != o.Attempts {
		s += fmt.Sprintf("(tries=%d)", o.Tries)
	}
	if o.Status == p.OpRetrying {
		s += "@" + fmtTime(o.NextAt)
	}
	if o.Unsure {
		s += "?" // some call's outcome was unknown
	}
	return s
}

// fmtTxn renders the parts of a state a reader of a transcript cares about.
func fmtTxn(t p.Txn) string {
	var sb strings.Builder
	st := string(t.Status)
	if t.Status == p.StatusNew {
		st = "new"
	}
	fmt.Fprintf(&sb, "status=%s", st)
	if t.StuckPhase != "" {
		fmt.Fprintf(&sb, " stuck_phase=%s", t.StuckPhase)
	}
	if t.Reason != "" {
		fmt.Fprintf(&sb, " reason=%q", t.Reason)
	}
	sb.WriteString("\n")
	for _, b := range t.Branches {
		bwd := string(b.BackwardOp)
		if bwd == "" {
			bwd = "phase2" // a 2pc or 3pc branch before the decision
		}
		if b.MidOp != "" {
			fmt.Fprintf(&sb, "  %s: %s=%s %s=%s %s=%s", b.ID, b.ForwardOp, fmtOp(b.Fwd), b.MidOp, fmtOp(b.Mid), bwd, fmtOp(b.Bwd))
		} else {
			fmt.Fprintf(&sb, "  %s: %s=%s %s=%s", b.ID, b.ForwardOp, fmtOp(b.Fwd), bwd, fmtOp(b.Bwd))
		}
		if len(b.History) > 0 {
			fmt.Fprintf(&sb, " history=%d", len(b.History))
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// fmtEffect renders one effect on one line.
func fmtEffect(e p.Effect) string {
	switch e := e.(type) {
	case p.Persist:
		return "Persist"
	case p.Deferred:
		return "Deferred"
	case p.Call:
		return fmt.Sprintf("Call %s %s #%d", e.Branch, e.Op, e.Attempt)
	case p.Arm:
		return "Arm " + fmtTime(e.At)
	case p.Report:
		return "Report " + string(e.Status)
	case p.Alert:
		return fmt.Sprintf("Alert %s %q", e.Kind, e.Message)
	}
	return fmt.Sprintf("unknown effect %T", e)
}

func fmtEffects(fx []p.Effect) string {
	if len(fx) == 0 {
		return "effects: none\n"
	}
	var sb strings.Builder
	sb.WriteString("effects:\n")
	for _, e := range fx {
		sb.WriteString("  " + fmtEffect(e) + "\n")
	}
	return sb.String()
}

// sagaDeps returns, for each branch index, the indexes its action waits for;
// it mirrors the documented saga ordering rule independently of package saga.
func sagaDeps(t p.Txn) [][]int {
	out := make([][]int, len(t.Branches))
	for i, b := range t.Branches {
		if !t.Concurrent {
			if i > 0 {
				out[i] = []int{i - 1}
			}
			continue
		}
		for _, id := range b.After {
			if j := t.Branch(id); j >= 0 {
				out[i] = append(out[i], j)
			}
		}
		sort.Ints(out[i])
	}
	return out
}

// snapshot is a deep copy that, unlike Txn.Clone, also copies payloads and
// turns empty slices into nil, so that DeepEqual compares content only.
func snapshot(t p.Txn) p.Txn {
	c := t.Clone()
	if len(c.Branches) == 0 {
		c.Branches = nil
	}
	for i := range c.Branches {
		b := &c.Branches[i]
		b.Payload = bytesOrNil(b.Payload)
		if len(b.After) == 0 {
			b.After = nil
		}
		if len(b.History) == 0 {
			b.History = nil
		}
	}
	return c
}

func bytesOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// sameTxn reports how a and b differ in content, or nil.
func sameTxn(a, b p.Txn) error {
	a, b = snapshot(a), snapshot(b)
	if reflect.DeepEqual(a, b) {
		return nil
	}
	return fmt.Errorf("states differ:\n  %+v\n  %+v", a, b)
}
