// Package metrics exports the coordinator's Prometheus metrics. It feeds
// on coordinator.Listener callbacks and a Stats snapshot taken at scrape
// time, so the coordinator itself never imports Prometheus.
//
// Every metric is listed, with its labels, in docs/operations.md.
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/protocol"
)

// Metrics holds the coordinator's metrics in a registry of their own.
type Metrics struct {
	reg *prometheus.Registry

	started     *prometheus.CounterVec   // mode
	finished    *prometheus.CounterVec   // mode, status
	calls       *prometheus.HistogramVec // mode, op, outcome
	retries     *prometheus.CounterVec   // mode, op
	alerts      *prometheus.CounterVec   // kind
	commitTime  prometheus.Histogram
	commitBatch prometheus.Histogram
	commitFails prometheus.Counter
	duration    *prometheus.HistogramVec // mode, status
	heartbeats  *prometheus.CounterVec   // result
	lastBeat    prometheus.Gauge
	leaseTTL    prometheus.Gauge

	now       func() time.Time
	mu        sync.Mutex           // guards startAt and lastSweep
	startAt   map[string]time.Time // gid → when Started saw it, until Ended
	lastSweep time.Time
}

// forgetAfter is how long a start time is kept for a transaction that has
// not ended here: one another instance took over (the coordinator reports
// no event for that) would otherwise stay in memory for good. Its duration,
// if it ever ends here, is then not observed.
const forgetAfter = 24 * time.Hour

// DurationBuckets are the buckets of concord_transaction_duration_seconds:
// from 5 ms (a saga of local calls) to 30 minutes (a transaction retried
// with backoff, or resolved by an operator).
var DurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// New creates the metrics, with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: time.Now, startAt: map[string]time.Time{}}
	m.started = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "concord_transactions_started_total",
		Help: "Transactions durably accepted by this process.",
	}, []string{"mode"})
	m.finished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "concord_transactions_finished_total",
		Help: "Transactions that reached a final status (succeeded or aborted) in this process.",
	}, []string{"mode", "status"})
	m.calls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "concord_branch_call_duration_seconds",
		Help:    "Branch calls to participants by operation and outcome (success, rejected, unknown, read-only); _count counts the calls.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"mode", "op", "outcome"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "concord_branch_retries_total",
		Help: "Branch calls that repeat an operation already called (after an unknown outcome or an operator retry).",
	}, []string{"mode", "op"})
	m.alerts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "concord_alerts_total",
		Help: "Alerts raised (webhook and ALERT log line), by kind.",
	}, []string{"kind"})
	m.commitTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "concord_store_commit_duration_seconds",
		Help:    "Time of one group commit to the store (write and sync).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})
	m.commitBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "concord_store_commit_batch_records",
		Help:    "Records written by one group commit.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
	})
	m.commitFails = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "concord_store_commit_errors_total",
		Help: "Group commits the store refused or failed.",
	})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "concord_transaction_duration_seconds",
		Help:    "Time from a transaction's acceptance by this process to its final status, by mode and status (succeeded, aborted). Transactions resumed after a restart or taken over are not observed.",
		Buckets: DurationBuckets,
	}, []string{"mode", "status"})
	m.heartbeats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "concord_lease_heartbeats_total",
		Help: "Renewals of this instance's lease in a shared store, by result (ok, error). Absent with a store of one's own.",
	}, []string{"result"})
	m.lastBeat = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "concord_lease_heartbeat_last_success_timestamp_seconds",
		Help: "Unix time of this instance's last successful lease renewal in a shared store (0 before the first).",
	})
	m.leaseTTL = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "concord_lease_ttl_seconds",
		Help: "This instance's lease in a shared store: past it without a renewal, other instances may take its transactions over (0 with a store of one's own).",
	})
	m.reg.MustRegister(m.heartbeats, m.lastBeat, m.leaseTTL)
	m.reg.MustRegister(m.started, m.finished, m.calls, m.retries, m.alerts, m.commitTime, m.commitBatch, m.commitFails, m.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Listener returns the coordinator callbacks that feed the metrics.
func (m *Metrics) Listener() coordinator.Listener {
	return coordinator.Listener{
		GroupCommit: func(records int, d time.Duration, err error) {
			m.commitTime.Observe(d.Seconds())
			m.commitBatch.Observe(float64(records))
			if err != nil {
				m.commitFails.Inc()
			}
		},
		BranchCall: func(mode protocol.Mode, op protocol.Op, outcome protocol.Outcome, d time.Duration) {
			m.calls.WithLabelValues(string(mode), string(op), string(outcome)).Observe(d.Seconds())
		},
		Started: func(_ context.Context, gid string, mode protocol.Mode) {
			m.started.WithLabelValues(string(mode)).Inc()
			now := m.now()
			m.mu.Lock()
			m.startAt[gid] = now
			if now.Sub(m.lastSweep) > time.Hour { // an O(live) sweep, at most hourly
				m.lastSweep = now
				for g, at := range m.startAt {
					if now.Sub(at) > forgetAfter {
						delete(m.startAt, g)
					}
				}
			}
			m.mu.Unlock()
		},
		Ended: func(gid string, mode protocol.Mode, status protocol.Status) {
			m.mu.Lock()
			at, ok := m.startAt[gid]
			delete(m.startAt, gid)
			m.mu.Unlock()
			if ok {
				m.duration.WithLabelValues(string(mode), string(status)).Observe(m.now().Sub(at).Seconds())
			}
		},
		Finished: func(mode protocol.Mode, status protocol.Status) {
			m.finished.WithLabelValues(string(mode), string(status)).Inc()
		},
		Heartbeat: func(lease time.Duration, err error) {
			m.leaseTTL.Set(lease.Seconds())
			if err != nil {
				m.heartbeats.WithLabelValues("error").Inc()
				return
			}
			m.heartbeats.WithLabelValues("ok").Inc()
			m.lastBeat.Set(float64(m.now().UnixNano()) / 1e9)
		},
		Alerted: func(a coordinator.Alert) {
			m.alerts.WithLabelValues(a.Kind).Inc()
		},
		CallStart: func(ctx context.Context, _ string, mode protocol.Mode, call protocol.Call) (context.Context, func(protocol.Outcome, string)) {
			if call.Attempt > 1 {
				m.retries.WithLabelValues(string(mode), string(call.Op)).Inc()
			}
			return ctx, nil
		},
	}
}

// Watch registers the gauges read from stats at every scrape (live and
// stuck transactions, in-doubt 2PC branches, the group-commit queue).
func (m *Metrics) Watch(stats func() coordinator.Stats) {
	m.reg.MustRegister(&statsCollector{stats: stats})
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var (
	descLive = prometheus.NewDesc("concord_transactions_live",
		"Unfinished transactions this process drives (stuck ones included).", nil, nil)
	descStuck = prometheus.NewDesc("concord_transactions_stuck",
		"Transactions waiting for an operator (concord tx retry / abort).", nil, nil)
	descInDoubt = prometheus.NewDesc("concord_twopc_in_doubt_branches",
		"2PC branches that voted yes and have not acknowledged the decision yet.", nil, nil)
	descOldest = prometheus.NewDesc("concord_twopc_in_doubt_oldest_seconds",
		"How long the oldest in-doubt 2PC branch has waited since its vote (0 if none).", nil, nil)
	descQueue = prometheus.NewDesc("concord_store_commit_queue",
		"Writes waiting for the next group commit.", nil, nil)
)

// statsCollector turns one Stats snapshot per scrape into gauges.
type statsCollector struct{ stats func() coordinator.Stats }

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLive, descStuck, descInDoubt, descOldest, descQueue} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(descLive, prometheus.GaugeValue, float64(s.Live))
	ch <- prometheus.MustNewConstMetric(descStuck, prometheus.GaugeValue, float64(s.Stuck))
	ch <- prometheus.MustNewConstMetric(descInDoubt, prometheus.GaugeValue, float64(s.InDoubt))
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, s.OldestInDoubt.Seconds())
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(s.CommitQueue))
}
