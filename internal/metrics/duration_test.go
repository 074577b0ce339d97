package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/protocol"
)

// TestTransactionDuration drives the listener with a fake clock: each
// transaction lands in the buckets of its created → final time, labelled
// by mode and status; a transaction that ends without having started here
// (resumed after a restart) is not observed.
func TestTransactionDuration(t *testing.T) {
	m := New()
	clock := time.Unix(1_000_000, 0)
	m.now = func() time.Time { return clock }
	l := m.Listener()

	l.Started(context.Background(), "fast", protocol.ModeSaga)
	l.Started(context.Background(), "slow", protocol.ModeTwoPC)
	clock = clock.Add(40 * time.Millisecond)
	l.Ended("fast", protocol.ModeSaga, protocol.StatusSucceeded)
	clock = clock.Add(3 * time.Minute)
	l.Ended("slow", protocol.ModeTwoPC, protocol.StatusAborted)
	l.Ended("resumed", protocol.ModeSaga, protocol.StatusSucceeded)

	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"saga/succeeded": 0.04, "2pc/aborted": 180.04}
	seen := 0
	for _, f := range families {
		if f.GetName() != "concord_transaction_duration_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range s.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			key := labels["mode"] + "/" + labels["status"]
			secs, ok := want[key]
			if !ok {
				t.Errorf("unexpected series %s", key)
				continue
			}
			seen++
			h := s.GetHistogram()
			if h.GetSampleCount() != 1 || h.GetSampleSum() < secs-1e-9 || h.GetSampleSum() > secs+1e-9 {
				t.Errorf("%s: count %d sum %v, want 1 and %v", key, h.GetSampleCount(), h.GetSampleSum(), secs)
			}
			for _, b := range h.GetBucket() {
				wantCum := uint64(0)
				if b.GetUpperBound() >= secs {
					wantCum = 1
				}
				if b.GetCumulativeCount() != wantCum {
					t.Errorf("%s: bucket le=%v has %d, want %d", key, b.GetUpperBound(), b.GetCumulativeCount(), wantCum)
				}
			}
		}
	}
	if seen != len(want) {
		t.Errorf("saw %d duration series, want %d", seen, len(want))
	}
	if len(m.startAt) != 0 {
		t.Errorf("start times left behind: %v", m.startAt)
	}
}

// TestTransactionDurationForgets drops the start time of a transaction
// that never ends here (taken over by another instance) after a day.
func TestTransactionDurationForgets(t *testing.T) {
	m := New()
	clock := time.Unix(1_000_000, 0)
	m.now = func() time.Time { return clock }
	l := m.Listener()
	l.Started(context.Background(), "taken-over", protocol.ModeSaga)
	clock = clock.Add(2 * time.Hour)
	l.Started(context.Background(), "young", protocol.ModeSaga)
	if len(m.startAt) != 2 {
		t.Fatalf("%d start times, want 2", len(m.startAt))
	}
	clock = clock.Add(forgetAfter)
	l.Started(context.Background(), "new", protocol.ModeSaga)
	if _, ok := m.startAt["taken-over"]; ok || len(m.startAt) != 2 {
		t.Errorf("start times %v: want taken-over forgotten, young and new kept", m.startAt)
	}
}
