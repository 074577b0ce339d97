package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/concordtm/concord/internal/store"
)

// versioned returns a record with Owner and Version set.
func versioned(gid, owner string, version int64, data string) store.Record {
	r := record(gid, "saga", "running", false, 1_700_000_000_000_000_000, []byte(data))
	r.Owner, r.Version = owner, version
	return r
}

// checkConflict fails the test unless err is a *store.ConflictError that
// wraps store.ErrConflict and names exactly gids, in any order.
func checkConflict(t testing.TB, what string, err error, gids ...string) {
	t.Helper()
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("%s: got %v, want an error wrapping store.ErrConflict", what, err)
	}
	var ce *store.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: got %T (%v), want a *store.ConflictError", what, err, err)
	}
	got := slices.Sorted(slices.Values(ce.GIDs))
	want := slices.Sorted(slices.Values(gids))
	if !slices.Equal(got, want) {
		t.Fatalf("%s: ConflictError names %q, want %q", what, got, want)
	}
}

// checkAbsent fails the test unless gid has no record.
func checkAbsent(t testing.TB, s store.Store, gid string) {
	t.Helper()
	if r, err := s.Get(t.Context(), gid); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %+v, %v; want store.ErrNotFound", gid, r, err)
	}
}

// testVersionInsert: Version 1 creates a record only when none exists, and
// Version > 1 never creates one.
func testVersionInsert(t *testing.T, s store.Store) {
	first := versioned("vi-1", "node-a", 1, "first")
	commit(t, s, first)
	checkRecord(t, mustGet(t, s, "vi-1"), first)

	again := versioned("vi-1", "node-b", 1, "second")
	checkConflict(t, "second insert of vi-1", s.Commit(t.Context(), []store.Record{again}), "vi-1")
	checkRecord(t, mustGet(t, s, "vi-1"), first)

	// An unconditional record makes the gid taken as well.
	commit(t, s, versioned("vi-2", "", 0, "plain"))
	checkConflict(t, "insert over an unconditional record",
		s.Commit(t.Context(), []store.Record{versioned("vi-2", "node-a", 1, "x")}), "vi-2")

	checkConflict(t, "Version 2 of a missing record",
		s.Commit(t.Context(), []store.Record{versioned("vi-missing", "node-a", 2, "x")}), "vi-missing")
	checkAbsent(t, s, "vi-missing")

	fresh := versioned("vi-3", "node-a", 1, "fresh")
	fresh.Fresh = true
	commit(t, s, fresh)
	fresh.Fresh = false
	checkRecord(t, mustGet(t, s, "vi-3"), fresh)
}

// testVersionChain: each write must name the stored Version plus one; stale,
// repeated and skipping versions conflict and change nothing.
func testVersionChain(t *testing.T, s store.Store) {
	cur := versioned("vc-1", "node-a", 1, "v1")
	commit(t, s, cur)
	for v := int64(2); v <= 5; v++ {
		next := cur
		next.Version, next.Data, next.UpdatedAt = v, []byte(fmt.Sprint("v", v)), cur.UpdatedAt+1
		next.Status = []string{"running", "compensating"}[v%2]
		commit(t, s, next)
		cur = next
		checkRecord(t, mustGet(t, s, "vc-1"), cur)
	}
	for _, v := range []int64{1, 3, 5, 7, 100} {
		bad := cur
		bad.Version, bad.Data = v, []byte("bad")
		checkConflict(t, fmt.Sprintf("Version %d over stored 5", v), s.Commit(t.Context(), []store.Record{bad}), "vc-1")
	}
	checkRecord(t, mustGet(t, s, "vc-1"), cur)
	checkGIDs(t, "List status of v5", mustList(t, s, store.ListOptions{Status: cur.Status}), []string{"vc-1"})

	last := cur
	last.Version, last.Status, last.Finished = 6, "succeeded", true
	commit(t, s, last)
	checkRecord(t, mustGet(t, s, "vc-1"), last)
	checkUnfinished(t, s, map[string]store.Record{})
}

// testVersionAllOrNothing: one conflicting record fails the whole batch,
// whatever the others are, and the error names exactly the conflicting
// records.
func testVersionAllOrNothing(t *testing.T, s store.Store) {
	stale := versioned("aon-stale", "node-a", 1, "stale v1")
	plain := versioned("aon-plain", "", 0, "plain v0")
	good := versioned("aon-good", "node-a", 1, "good v1")
	taken := versioned("aon-taken", "node-b", 1, "taken v1")
	commit(t, s, stale, plain, good, taken)
	stale2 := stale
	stale2.Version, stale2.Data = 2, []byte("stale v2")
	commit(t, s, stale2)

	batch := []store.Record{
		versioned("aon-new", "node-a", 1, "new"),                                   // fine alone
		{GID: "aon-plain", Mode: "tcc", Status: "trying", Data: []byte("changed")}, // unconditional
		versioned("aon-stale", "node-a", 2, "lost update"),                         // stored is 2
		versioned("aon-good", "node-a", 2, "good v2"),                              // fine alone
		versioned("aon-taken", "node-a", 1, "insert over"),                         // exists
		versioned("aon-gone", "node-a", 4, "never created"),                        // absent
		versioned("aon-finished-new", "node-a", 0, "unconditional new"),
	}
	batch[len(batch)-1].Finished, batch[len(batch)-1].Status = true, "succeeded"
	err := s.Commit(t.Context(), batch)
	checkConflict(t, "mixed batch", err, "aon-stale", "aon-taken", "aon-gone")

	// Nothing of the batch is visible, in any read path.
	for _, gid := range []string{"aon-new", "aon-gone", "aon-finished-new"} {
		checkAbsent(t, s, gid)
	}
	checkRecord(t, mustGet(t, s, "aon-plain"), plain)
	checkRecord(t, mustGet(t, s, "aon-stale"), stale2)
	checkRecord(t, mustGet(t, s, "aon-good"), good)
	checkRecord(t, mustGet(t, s, "aon-taken"), taken)
	checkGIDs(t, "List after the failed batch", mustList(t, s, store.ListOptions{GIDPrefix: "aon-"}),
		[]string{"aon-taken", "aon-stale", "aon-plain", "aon-good"})
	checkGIDs(t, "List mode tcc", mustList(t, s, store.ListOptions{Mode: "tcc"}), nil)
	checkGIDs(t, "List status succeeded", mustList(t, s, store.ListOptions{Status: "succeeded"}), nil)
	checkUnfinished(t, s, map[string]store.Record{
		"aon-plain": plain, "aon-stale": stale2, "aon-good": good, "aon-taken": taken,
	})

	// The caller drops the conflicting records and commits the rest.
	var rest []store.Record
	for _, r := range batch {
		if !slices.Contains([]string{"aon-stale", "aon-taken", "aon-gone"}, r.GID) {
			rest = append(rest, r)
		}
	}
	commit(t, s, rest...)
	for _, r := range rest {
		checkRecord(t, mustGet(t, s, r.GID), r)
	}
	checkGIDs(t, "List mode tcc after the retry", mustList(t, s, store.ListOptions{Mode: "tcc"}), []string{"aon-plain"})
}

// testVersionZero: Version 0 writes whatever is stored and stores Version 0.
func testVersionZero(t *testing.T, s store.Store) {
	commit(t, s, versioned("vz-1", "node-a", 1, "v1"))
	v2 := versioned("vz-1", "node-a", 2, "v2")
	commit(t, s, v2)
	over := versioned("vz-1", "node-b", 0, "overwritten")
	commit(t, s, over)
	checkRecord(t, mustGet(t, s, "vz-1"), over)
	// Stored Version 0 is followed by no fenced write: Version 1 means
	// "absent" and Version 2 wants 1. Only a claim (0 -> 1) fences it.
	checkConflict(t, "Version 1 over a stored Version 0",
		s.Commit(t.Context(), []store.Record{versioned("vz-1", "node-b", 1, "x")}), "vz-1")
	checkConflict(t, "Version 2 over a stored Version 0",
		s.Commit(t.Context(), []store.Record{versioned("vz-1", "node-b", 2, "x")}), "vz-1")
	commit(t, s, versioned("vz-absent", "", 0, "new"))
	checkRecord(t, mustGet(t, s, "vz-absent"), versioned("vz-absent", "", 0, "new"))
}

// testOwnerRoundtrip: Owner and Version come back from Get, List and
// Unfinished.
func testOwnerRoundtrip(t *testing.T, s store.Store) {
	recs := []store.Record{
		versioned("or-a", "coordinator-7f3a/host.example:7070", 1, "a"),
		versioned("or-b", "ü-owner", 0, "b"),
		versioned("or-c", "", 0, "c"),
	}
	recs[1].CreatedAt++
	recs[2].CreatedAt += 2
	commit(t, s, recs...)
	commit(t, s, versioned("or-d", "node-d", 1, "d"))
	d := versioned("or-d", "node-d", 2, "d2")
	d.Finished, d.Status, d.CreatedAt = true, "succeeded", recs[0].CreatedAt+3
	commit(t, s, d)
	want := map[string]store.Record{"or-a": recs[0], "or-b": recs[1], "or-c": recs[2], "or-d": d}
	for gid, w := range want {
		checkRecord(t, mustGet(t, s, gid), w)
	}
	for _, r := range mustList(t, s, store.ListOptions{GIDPrefix: "or-"}) {
		checkRecord(t, r, want[r.GID])
	}
	delete(want, "or-d")
	checkUnfinished(t, s, want)
}

// testVersionRace: writers racing to advance one record from the same
// version: exactly one wins each round.
func testVersionRace(t *testing.T, s store.Store) {
	const writers, rounds = 6, 8
	commit(t, s, versioned("vr-1", "w", 1, "start"))
	for round := int64(2); round < 2+rounds; round++ {
		var wins sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for w := range writers {
			wins.Go(func() {
				err := s.Commit(t.Context(), []store.Record{versioned("vr-1", fmt.Sprint("w", w), round, "data")})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("round %d writer %d: %v", round, w, err)
				}
			})
		}
		wins.Wait()
		if won != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1", round, won)
		}
		if got := mustGet(t, s, "vr-1"); got.Version != round {
			t.Fatalf("round %d: stored Version %d", round, got.Version)
		}
	}
}
