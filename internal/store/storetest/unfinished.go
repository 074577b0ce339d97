package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/concordtm/concord/internal/store"
)

// checkUnfinished fails the test unless Unfinished reports exactly want.
func checkUnfinished(t *testing.T, s store.Store, want map[string]store.Record) {
	t.Helper()
	got := unfinished(t, s)
	for gid, w := range want {
		g, ok := got[gid]
		if !ok {
			t.Errorf("Unfinished did not report %q", gid)
			continue
		}
		checkRecord(t, g, w)
	}
	for gid := range got {
		if _, ok := want[gid]; !ok {
			t.Errorf("Unfinished reported %q, which is finished or absent", gid)
		}
	}
}

func testUnfinished(t *testing.T, s store.Store) {
	live := make(map[string]store.Record)
	var batch []store.Record
	for i := range 40 {
		r := record(fmt.Sprintf("uf-%02d", i), "saga", "running", i%4 == 0, int64(i), []byte(fmt.Sprint(i)))
		if r.Finished {
			r.Status = "succeeded"
		} else {
			live[r.GID] = r
		}
		batch = append(batch, r)
	}
	commit(t, s, batch...)
	checkUnfinished(t, s, live)

	// Finish some, advance others; the finished ones must leave the set.
	batch = batch[:0]
	for _, gid := range slices.Sorted(maps.Keys(live))[:10] {
		r := live[gid]
		r.UpdatedAt += 10
		if len(batch)%2 == 0 {
			r.Status, r.Finished = "failed", true
			delete(live, gid)
		} else {
			r.Status = "compensating"
			live[gid] = r
		}
		batch = append(batch, r)
	}
	commit(t, s, batch...)
	checkUnfinished(t, s, live)

	// A finished record that is rewritten as unfinished rejoins the set.
	back := mustGet(t, s, "uf-00")
	back.Status, back.Finished, back.UpdatedAt = "running", false, back.UpdatedAt+1
	commit(t, s, back)
	live[back.GID] = back
	checkUnfinished(t, s, live)
}

func testUnfinishedStops(t *testing.T, s store.Store) {
	var batch []store.Record
	for i := range 10 {
		batch = append(batch, record(fmt.Sprintf("stop-%d", i), "tcc", "trying", false, int64(i), nil))
	}
	commit(t, s, batch...)
	stop := errors.New("stop here")
	calls := 0
	err := s.Unfinished(t.Context(), func(store.Record) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Unfinished returned %v, want the callback's error", err)
	}
	if calls != 1 {
		t.Fatalf("callback called %d times after returning an error, want 1", calls)
	}
}

// testDeleter checks DeleteFinished when the store implements store.Deleter:
// only finished records last updated before the cutoff go, at most limit of
// them per call, and they disappear from every read path.
func testDeleter(t *testing.T, s store.Store) {
	d, ok := s.(store.Deleter)
	if !ok {
		t.Log("store does not implement store.Deleter; nothing to check")
		return
	}
	const cutoff = 10_000
	keep := make(map[string]store.Record)
	var old []string
	var batch []store.Record
	add := func(gid, status string, finished bool, updated int64) {
		r := record(gid, "saga", status, finished, updated-500, []byte(gid))
		r.UpdatedAt = updated
		batch = append(batch, r)
		if finished && updated < cutoff {
			old = append(old, gid)
		} else {
			keep[gid] = r
		}
	}
	for i := range 7 {
		add(fmt.Sprintf("del-old-%d", i), "succeeded", true, cutoff-1000+int64(i))
	}
	add("del-at-cutoff", "failed", true, cutoff)
	add("del-new", "succeeded", true, cutoff+1)
	add("del-old-unfinished", "running", false, 1)
	// Finished long ago, then rewritten after the cutoff: must be kept.
	add("del-refreshed", "succeeded", true, cutoff+5)
	refreshed := batch[len(batch)-1]
	batch[len(batch)-1].UpdatedAt = 1
	commit(t, s, batch...)
	commit(t, s, refreshed)

	ctx := t.Context()
	total := 0
	for _, want := range []int{3, 3, 1, 0} {
		n, err := d.DeleteFinished(ctx, cutoff, 3)
		if err != nil {
			t.Fatalf("DeleteFinished: %v", err)
		}
		if n != want {
			t.Fatalf("DeleteFinished(limit 3) deleted %d records after %d, want %d", n, total, want)
		}
		total += n
	}
	for _, gid := range old {
		if _, err := s.Get(ctx, gid); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) after deletion: got %v, want store.ErrNotFound", gid, err)
		}
	}
	for gid, want := range keep {
		checkRecord(t, mustGet(t, s, gid), want)
	}
	all := slices.Collect(maps.Values(keep))
	for _, opts := range []store.ListOptions{{}, {Status: "succeeded"}, {Mode: "saga"}, {GIDPrefix: "del-old"}} {
		opts.Limit = 100
		checkGIDs(t, fmt.Sprintf("List(%+v) after deletion", opts), mustList(t, s, opts), expect(all, opts))
	}
	checkUnfinished(t, s, map[string]store.Record{"del-old-unfinished": keep["del-old-unfinished"]})

	// Everything finished goes with a late enough cutoff.
	n, err := d.DeleteFinished(ctx, 1<<62, 100)
	if err != nil || n != 3 {
		t.Fatalf("DeleteFinished(all) = %d, %v; want 3, nil", n, err)
	}
}
