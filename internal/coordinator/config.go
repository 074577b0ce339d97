package coordinator

import (
	"context"
	"log/slog"
	"time"

	"github.com/concordtm/concord/internal/destination"
	"github.com/concordtm/concord/internal/protocol"
)

// Config configures a Coordinator. The zero value of every field takes the
// default noted beside it.
type Config struct {
	// Defaults fill in every per-transaction option a request leaves zero.
	Defaults protocol.Options
	// MaxBatch bounds how many records one group commit writes (512).
	MaxBatch int
	// AlertWebhook, if set, receives a JSON POST for every alert.
	AlertWebhook string
	// RecoveryWorkers bounds how many transactions are resumed at once after
	// a restart (16).
	RecoveryWorkers int
	// ReloadDelay is how long a transaction whose write failed waits before
	// it is reloaded from the store and resumed (1s).
	ReloadDelay time.Duration
	Logger      *slog.Logger
	// Caller performs branch calls (a SchemeCaller: HTTP, gRPC and
	// brokers). Close closes it, once no call is in flight, if it has a
	// Close method (io.Closer): the broker connections it keeps.
	Caller Caller
	// Destinations, if set, is asked before every branch, check-back and
	// broker call; a refused URL is not called, and the call's outcome is
	// unknown (retried, then alerted as any failing branch), so that a
	// record written before the allow-list changed is not called either.
	Destinations *destination.Policy
	// Listener receives optional observability callbacks.
	Listener Listener
	// Shared, when set, runs this coordinator as one of several processes
	// over one shared store (which must implement store.Leaser). Leave nil
	// for a single coordinator on its own store.
	Shared *SharedConfig
	// Retention, if positive, deletes finished transactions last updated
	// longer ago than this, in small batches (the store must implement
	// store.Deleter).
	Retention time.Duration
	// RetentionInterval is how often the retention sweep runs (1m).
	RetentionInterval time.Duration
	// RetentionBatch bounds the records one delete removes (500).
	RetentionBatch int
	// InDoubtAlert, if positive, raises an alert (log line and webhook)
	// once for every 2PC transaction with a branch that voted yes and has
	// waited longer than this for phase 2.
	InDoubtAlert time.Duration
}

// SharedConfig configures a coordinator that shares its store with others.
//
// Every write carries the instance as owner and a version one above the
// record's last, so a write by an instance that lost the transaction to
// another fails in the store (fencing). Each instance heartbeats through
// the store; the records of an instance whose heartbeat lapsed (by the
// store's clock) are claimed by the others and resumed.
type SharedConfig struct {
	// Instance names this process; empty picks a random one. Two live
	// processes must never share a name.
	Instance string
	// LeaseTTL is how long an instance is presumed alive after a heartbeat
	// (10s); its transactions move to others this long after it dies.
	LeaseTTL time.Duration
	// ClaimInterval is how often orphaned transactions are looked for
	// (LeaseTTL/4).
	ClaimInterval time.Duration
	// ClaimBatch bounds the records one claim takes (256).
	ClaimBatch int
	// PollInterval is how often Wait reads the store for a transaction
	// another instance drives (50ms).
	PollInterval time.Duration
}

// Listener is a set of optional callbacks for metrics and tracing. Nil
// fields are skipped. Callbacks must be fast and must not block.
type Listener struct {
	// GroupCommit is called after every store commit with the number of
	// records in the batch.
	GroupCommit func(records int, d time.Duration, err error)
	// BranchCall is called after every branch call.
	BranchCall func(mode protocol.Mode, op protocol.Op, outcome protocol.Outcome, d time.Duration)
	// Finished is called when a transaction reaches a final status.
	Finished func(mode protocol.Mode, status protocol.Status)
	// Alerted is called for every alert.
	Alerted func(a Alert)
	// Started is called once a new transaction is durably accepted,
	// before any of its branch calls. ctx is the submission's (the API
	// request's): it carries the caller's trace context, if any; it may
	// be cancelled soon after, so keep values from it, not ctx itself.
	Started func(ctx context.Context, gid string, mode protocol.Mode)
	// Resumed is called when this coordinator takes up an unfinished
	// transaction it did not accept in this run: after a restart (how is
	// "restart") or from a lapsed instance of a shared store ("takeover"),
	// before the transaction's next branch call.
	Resumed func(gid string, mode protocol.Mode, how string)
	// Ended is called with Finished, naming the transaction.
	Ended func(gid string, mode protocol.Mode, status protocol.Status)
	// Heartbeat is called after every renewal of this instance's lease in
	// a shared store (the first one at Start included), with its error.
	// It is never called with a store of one's own.
	Heartbeat func(lease time.Duration, err error)
	// CallStart is called before every branch call. The context it
	// returns is the one the Caller gets (a tracer adds its span), and
	// done, if not nil, is called with the call's outcome. See observe.go.
	CallStart func(ctx context.Context, gid string, mode protocol.Mode, call protocol.Call) (_ context.Context, done func(protocol.Outcome, string))
}

// DefaultOptions are the built-in per-transaction defaults.
var DefaultOptions = protocol.Options{
	Timeout:          int64(60 * time.Second),
	BranchTimeout:    int64(10 * time.Second),
	MaxAttempts:      8,
	MaxTotalAttempts: 64,
	RetryInitial:     int64(200 * time.Millisecond),
	RetryMax:         int64(30 * time.Second),
}

// withDefaults fills zero fields of o from d, then from DefaultOptions.
func withDefaults(o, d protocol.Options) protocol.Options {
	fill := func(v *int64, a, b int64) {
		if *v == 0 {
			*v = a
		}
		if *v == 0 {
			*v = b
		}
	}
	fillInt := func(v *int, a, b int) {
		if *v == 0 {
			*v = a
		}
		if *v == 0 {
			*v = b
		}
	}
	fill(&o.Timeout, d.Timeout, DefaultOptions.Timeout)
	fill(&o.BranchTimeout, d.BranchTimeout, DefaultOptions.BranchTimeout)
	fill(&o.RetryInitial, d.RetryInitial, DefaultOptions.RetryInitial)
	fill(&o.RetryMax, d.RetryMax, DefaultOptions.RetryMax)
	fillInt(&o.MaxAttempts, d.MaxAttempts, DefaultOptions.MaxAttempts)
	fillInt(&o.MaxTotalAttempts, d.MaxTotalAttempts, DefaultOptions.MaxTotalAttempts)
	return o
}
