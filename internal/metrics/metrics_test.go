package metrics_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/metrics"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store/memstore"
	"github.com/concordtm/concord/internal/testenv"
)

// scrape returns every sample line of the metrics page as name{labels} → value.
func scrape(t *testing.T, h http.Handler) map[string]string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

func want(t *testing.T, got map[string]string, sample, value string) {
	t.Helper()
	if got[sample] != value {
		t.Errorf("%s = %q, want %s", sample, got[sample], value)
	}
}

// TestKnownWorkload runs N sagas that succeed, M that compensate and one
// that gets stuck, then checks the scraped counters exactly.
func TestKnownWorkload(t *testing.T) {
	const n, m = 7, 3
	var failing atomic.Bool
	failing.Store(true)
	var retried atomic.Int32
	participant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/reject":
			http.Error(w, "no", http.StatusConflict)
		case "/flaky":
			if failing.Load() {
				http.Error(w, "down", http.StatusInternalServerError)
				return
			}
			retried.Add(1)
		}
	}))
	defer participant.Close()

	met := metrics.New()
	c := coordinator.New(coordinator.Config{
		Listener: met.Listener(),
		Defaults: protocol.Options{MaxAttempts: 2, RetryInitial: int64(time.Millisecond), RetryMax: int64(2 * time.Millisecond)},
	}, memstore.New())
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	met.Watch(c.Stats)

	url := func(p string) string { return participant.URL + p }
	run := func(gid string, branches ...protocol.Branch) protocol.Txn {
		t.Helper()
		if _, err := c.SubmitSaga(t.Context(), coordinator.SagaSpec{GID: gid, Branches: branches}); err != nil {
			t.Fatal(err)
		}
		tx, err := c.Wait(t.Context(), gid)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	for i := range n {
		tx := run(fmt.Sprint("ok-", i),
			protocol.Branch{ForwardURL: url("/a"), BackwardURL: url("/ca")},
			protocol.Branch{ForwardURL: url("/b"), BackwardURL: url("/cb")})
		if tx.Status != protocol.StatusSucceeded {
			t.Fatalf("%s: %s", tx.GID, tx.Status)
		}
	}
	for i := range m {
		tx := run(fmt.Sprint("comp-", i),
			protocol.Branch{ForwardURL: url("/a"), BackwardURL: url("/ca")},
			protocol.Branch{ForwardURL: url("/reject"), BackwardURL: url("/cb")})
		if tx.Status != protocol.StatusAborted {
			t.Fatalf("%s: %s", tx.GID, tx.Status)
		}
	}
	// Stuck: the compensation of branch 1 fails twice (max attempts 2).
	tx := run("stuck",
		protocol.Branch{ForwardURL: url("/a"), BackwardURL: url("/flaky")},
		protocol.Branch{ForwardURL: url("/reject"), BackwardURL: url("/cb")})
	if tx.Status != protocol.StatusStuck {
		t.Fatalf("stuck: %s", tx.Status)
	}

	got := scrape(t, met.Handler())
	want(t, got, `concord_transactions_started_total{mode="saga"}`, fmt.Sprint(n+m+1))
	want(t, got, `concord_transactions_finished_total{mode="saga",status="succeeded"}`, fmt.Sprint(n))
	want(t, got, `concord_transactions_finished_total{mode="saga",status="aborted"}`, fmt.Sprint(m))
	// n sagas: 2 successful actions; m+1: 1 successful action, 1 rejected.
	want(t, got, `concord_branch_call_duration_seconds_count{mode="saga",op="action",outcome="success"}`, fmt.Sprint(2*n+m+1))
	want(t, got, `concord_branch_call_duration_seconds_count{mode="saga",op="action",outcome="rejected"}`, fmt.Sprint(m+1))
	want(t, got, `concord_branch_call_duration_seconds_count{mode="saga",op="compensate",outcome="success"}`, fmt.Sprint(m))
	want(t, got, `concord_branch_call_duration_seconds_count{mode="saga",op="compensate",outcome="unknown"}`, "2")
	want(t, got, `concord_branch_retries_total{mode="saga",op="compensate"}`, "1")
	want(t, got, `concord_alerts_total{kind="stuck"}`, "1")
	want(t, got, `concord_transactions_live`, "1")
	want(t, got, `concord_transactions_stuck`, "1")
	want(t, got, `concord_twopc_in_doubt_branches`, "0")
	if got[`concord_store_commit_batch_records_count`] == "" || got[`concord_store_commit_batch_records_count`] == "0" {
		t.Errorf("no group commit observed")
	}
	want(t, got, `concord_store_commit_errors_total`, "0")

	// The operator fixes the participant and retries: the gauge drops.
	failing.Store(false)
	if _, err := c.Retry(t.Context(), "stuck"); err != nil {
		t.Fatal(err)
	}
	if tx, err := c.Wait(t.Context(), "stuck"); err != nil || tx.Status != protocol.StatusAborted {
		t.Fatalf("after retry: %s %v", tx.Status, err)
	}
	testenv.Eventually(t, 10*time.Second, "the finished counter to count the retried saga", func() bool {
		return scrape(t, met.Handler())[`concord_transactions_finished_total{mode="saga",status="aborted"}`] == fmt.Sprint(m+1)
	})
	got = scrape(t, met.Handler())
	want(t, got, `concord_transactions_stuck`, "0")
	want(t, got, `concord_transactions_live`, "0")
	want(t, got, `concord_branch_retries_total{mode="saga",op="compensate"}`, "2")
	want(t, got, `concord_transaction_duration_seconds_count{mode="saga",status="succeeded"}`, fmt.Sprint(n))
	want(t, got, `concord_transaction_duration_seconds_count{mode="saga",status="aborted"}`, fmt.Sprint(m+1))
}

// flakyLease is a memstore whose lease renewals fail while failing is set.
type flakyLease struct {
	*memstore.Store
	failing atomic.Bool
}

func (s *flakyLease) Heartbeat(ctx context.Context, instance string, ttl time.Duration) error {
	if s.failing.Load() {
		return errors.New("store unreachable")
	}
	return s.Store.Heartbeat(ctx, instance, ttl)
}

// TestLeaseHeartbeat runs a coordinator on a shared store: its renewals
// show as ok, the lease as a gauge, and failed renewals as errors while the
// last-success time stands still.
func TestLeaseHeartbeat(t *testing.T) {
	st := &flakyLease{Store: memstore.New()}
	met := metrics.New()
	c := coordinator.New(coordinator.Config{
		Listener: met.Listener(),
		Shared:   &coordinator.SharedConfig{Instance: "a", LeaseTTL: 60 * time.Millisecond},
	}, st)
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testenv.Eventually(t, 10*time.Second, "three successful renewals", func() bool {
		n, _ := strconv.Atoi(scrape(t, met.Handler())[`concord_lease_heartbeats_total{result="ok"}`])
		return n >= 3
	})
	got := scrape(t, met.Handler())
	want(t, got, `concord_lease_ttl_seconds`, "0.06")
	if got[`concord_lease_heartbeat_last_success_timestamp_seconds`] == "0" {
		t.Error("no last-success time")
	}
	st.failing.Store(true)
	testenv.Eventually(t, 10*time.Second, "two failed renewals", func() bool {
		n, _ := strconv.Atoi(scrape(t, met.Handler())[`concord_lease_heartbeats_total{result="error"}`])
		return n >= 2
	})
	last := scrape(t, met.Handler())[`concord_lease_heartbeat_last_success_timestamp_seconds`]
	testenv.Eventually(t, 10*time.Second, "another failed renewal", func() bool {
		n, _ := strconv.Atoi(scrape(t, met.Handler())[`concord_lease_heartbeats_total{result="error"}`])
		return n >= 3
	})
	if now := scrape(t, met.Handler())[`concord_lease_heartbeat_last_success_timestamp_seconds`]; now != last {
		t.Errorf("last success moved from %s to %s while renewals failed", last, now)
	}
}
