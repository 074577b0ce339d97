package storetest

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/store"
)

// Lease durations: long enough to outlive a subtest, short enough to wait
// for.
const (
	longTTL  = time.Minute
	shortTTL = 400 * time.Millisecond
)

// leaserTests run on stores that implement store.Leaser and pass at once on
// the others.
var leaserTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"LeaseClaimDeadOwners", leaser(testClaimDead)},
	{"LeaseExpiry", leaser(testLeaseExpiry)},
	{"LeaseClaimLimit", leaser(testClaimLimit)},
	{"LeaseFencesStaleOwner", leaser(testClaimFences)},
	{"LeaseConcurrentClaims", leaser(testClaimConcurrent)},
}

// leaser adapts a Leaser test to the suite's signature.
func leaser(fn func(t *testing.T, s store.Store, l store.Leaser)) func(t *testing.T, s store.Store) {
	return func(t *testing.T, s store.Store) {
		l, ok := s.(store.Leaser)
		if !ok {
			t.Log("store does not implement store.Leaser; nothing to check")
			return
		}
		fn(t, s, l)
	}
}

func heartbeat(t testing.TB, l store.Leaser, instance string, ttl time.Duration) {
	t.Helper()
	if err := l.Heartbeat(t.Context(), instance, ttl); err != nil {
		t.Fatalf("Heartbeat(%q, %v): %v", instance, ttl, err)
	}
}

func claim(t testing.TB, l store.Leaser, instance string, limit int) []store.Record {
	t.Helper()
	rs, err := l.Claim(t.Context(), instance, limit)
	if err != nil {
		t.Fatalf("Claim(%q, %d): %v", instance, limit, err)
	}
	if len(rs) > max(limit, 0) {
		t.Fatalf("Claim(%q, %d) returned %d records", instance, limit, len(rs))
	}
	return rs
}

// claimed returns what a claim by instance makes of r.
func claimed(r store.Record, instance string) store.Record {
	r.Owner, r.Version = instance, r.Version+1
	return r
}

// checkClaimed fails the test unless got are exactly want (by gid, in any
// order) and the store holds them as returned.
func checkClaimed(t testing.TB, s store.Store, what string, got []store.Record, want ...store.Record) {
	t.Helper()
	byGID := make(map[string]store.Record)
	for _, r := range got {
		if _, dup := byGID[r.GID]; dup {
			t.Fatalf("%s: %q returned twice", what, r.GID)
		}
		byGID[r.GID] = r
	}
	wantGIDs := make([]string, len(want))
	for i, w := range want {
		wantGIDs[i] = w.GID
	}
	if gotGIDs := slices.Sorted(maps.Keys(byGID)); !slices.Equal(gotGIDs, slices.Sorted(slices.Values(wantGIDs))) {
		t.Fatalf("%s: claimed %q, want %q", what, gotGIDs, slices.Sorted(slices.Values(wantGIDs)))
	}
	for _, w := range want {
		checkRecord(t, byGID[w.GID], w)
		checkRecord(t, mustGet(t, s, w.GID), w)
	}
}

// testClaimDead: records of owners that never heartbeated, released, or
// are empty are claimed; a live owner's, the claimer's own and finished
// records are not.
func testClaimDead(t *testing.T, s store.Store, l store.Leaser) {
	heartbeat(t, l, "live", longTTL)
	heartbeat(t, l, "me", longTTL)
	heartbeat(t, l, "gone", longTTL)
	if err := l.Release(t.Context(), "gone"); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := l.Release(t.Context(), "never-seen"); err != nil {
		t.Fatalf("Release of an instance that never heartbeated: %v", err)
	}
	orphan := versioned("cd-orphan", "", 0, "no owner")
	ghost := versioned("cd-ghost", "ghost", 1, "never heartbeated")
	gone := versioned("cd-gone", "gone", 1, "released")
	live := versioned("cd-live", "live", 1, "live owner")
	mine := versioned("cd-mine", "me", 1, "mine")
	done := versioned("cd-done", "ghost", 1, "finished")
	done.Finished, done.Status = true, "succeeded"
	commit(t, s, orphan, ghost, gone, live, mine, done)
	gone2 := gone
	gone2.Version, gone2.Data = 2, []byte("released, v2")
	commit(t, s, gone2)

	got := claim(t, l, "me", 100)
	checkClaimed(t, s, "Claim(me)", got, claimed(orphan, "me"), claimed(ghost, "me"), claimed(gone2, "me"))
	checkRecord(t, mustGet(t, s, "cd-live"), live)
	checkRecord(t, mustGet(t, s, "cd-mine"), mine)
	checkRecord(t, mustGet(t, s, "cd-done"), done)

	checkClaimed(t, s, "second Claim(me)", claim(t, l, "me", 100))
	checkClaimed(t, s, "Claim(other) of live owners' records", claim(t, l, "other", 100))
	checkUnfinished(t, s, map[string]store.Record{
		"cd-orphan": claimed(orphan, "me"), "cd-ghost": claimed(ghost, "me"), "cd-gone": claimed(gone2, "me"),
		"cd-live": live, "cd-mine": mine,
	})

	// Once "live" releases, its record goes too.
	if err := l.Release(t.Context(), "live"); err != nil {
		t.Fatalf("Release: %v", err)
	}
	checkClaimed(t, s, "Claim(other) after Release(live)", claim(t, l, "other", 100), claimed(live, "other"))
}

// testLeaseExpiry: an owner whose heartbeat is not renewed within the ttl
// loses its records; one that renews keeps them.
func testLeaseExpiry(t *testing.T, s store.Store, l store.Leaser) {
	start := time.Now()
	heartbeat(t, l, "short", shortTTL)
	heartbeat(t, l, "renewed", shortTTL)
	heartbeat(t, l, "renewed", longTTL)
	short := versioned("ex-short", "short", 1, "short")
	renewed := versioned("ex-renewed", "renewed", 1, "renewed")
	commit(t, s, short, renewed)
	got := claim(t, l, "taker", 10)
	if time.Since(start) < shortTTL {
		checkClaimed(t, s, "Claim before the ttl ran out", got)
	}
	for len(got) == 0 {
		if time.Since(start) > 10*shortTTL+5*time.Second {
			t.Fatalf("the record of an instance whose %v lease ran out was not claimable after %v", shortTTL, time.Since(start))
		}
		time.Sleep(shortTTL / 10) // polling the store's clock, which the test cannot advance
		got = claim(t, l, "taker", 10)
	}
	if elapsed := time.Since(start); elapsed < shortTTL/2 {
		t.Fatalf("claimed %v after a heartbeat with ttl %v", elapsed, shortTTL)
	}
	checkClaimed(t, s, "Claim after the ttl", got, claimed(short, "taker"))
	checkRecord(t, mustGet(t, s, "ex-renewed"), renewed)
}

// testClaimLimit: Claim takes at most limit records per call.
func testClaimLimit(t *testing.T, s store.Store, l store.Leaser) {
	var batch []store.Record
	for i := range 10 {
		batch = append(batch, versioned(fmt.Sprintf("cl-%02d", i), "ghost", 0, "x"))
	}
	commit(t, s, batch...)
	heartbeat(t, l, "me", longTTL)
	if rs := claim(t, l, "me", 0); len(rs) != 0 {
		t.Fatalf("Claim(limit 0) took %d records", len(rs))
	}
	seen := make(map[string]bool)
	for _, want := range []int{3, 3, 3, 1, 0} {
		rs := claim(t, l, "me", 3)
		if len(rs) != want {
			t.Fatalf("Claim(limit 3) after %d took %d records, want %d", len(seen), len(rs), want)
		}
		for _, r := range rs {
			if seen[r.GID] {
				t.Fatalf("%q claimed twice", r.GID)
			}
			seen[r.GID] = true
			if r.Owner != "me" || r.Version != 1 {
				t.Fatalf("claimed %q has Owner %q Version %d, want me and 1", r.GID, r.Owner, r.Version)
			}
		}
	}
}

// testClaimFences: after a claim, the old owner's next write conflicts and
// the new owner's succeeds.
func testClaimFences(t *testing.T, s store.Store, l store.Leaser) {
	commit(t, s, versioned("fe-1", "old", 1, "v1"))
	v2 := versioned("fe-1", "old", 2, "v2")
	commit(t, s, v2)
	heartbeat(t, l, "new", longTTL)
	checkClaimed(t, s, "Claim(new)", claim(t, l, "new", 10), claimed(v2, "new"))

	stale := versioned("fe-1", "old", 3, "stale write")
	checkConflict(t, "the old owner's write after the claim", s.Commit(t.Context(), []store.Record{stale}), "fe-1")
	next := versioned("fe-1", "new", 4, "the new owner's write")
	commit(t, s, next)
	checkRecord(t, mustGet(t, s, "fe-1"), next)
}

// testClaimConcurrent: several live instances claim at once; every record is
// taken by exactly one.
func testClaimConcurrent(t *testing.T, s store.Store, l store.Leaser) {
	const records, claimers, limit = 120, 6, 5
	var batch []store.Record
	for i := range records {
		batch = append(batch, versioned(fmt.Sprintf("cc-%03d", i), fmt.Sprint("dead-", i%3), 0, "x"))
	}
	commit(t, s, batch...)
	for c := range claimers {
		heartbeat(t, l, fmt.Sprint("claimer-", c), longTTL)
	}
	var mu sync.Mutex
	owner := make(map[string]string)
	var wg sync.WaitGroup
	for c := range claimers {
		wg.Go(func() {
			me := fmt.Sprint("claimer-", c)
			for {
				rs, err := l.Claim(t.Context(), me, limit)
				if err != nil {
					t.Errorf("Claim(%s): %v", me, err)
					return
				}
				if len(rs) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rs {
					if prev, dup := owner[r.GID]; dup {
						t.Errorf("%q claimed by %s and by %s", r.GID, prev, me)
					}
					owner[r.GID] = me
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(owner) != records {
		t.Fatalf("%d of %d records claimed", len(owner), records)
	}
	for gid, who := range owner {
		if r := mustGet(t, s, gid); r.Owner != who || r.Version != 1 {
			t.Fatalf("%s: Owner %q Version %d, want %q and 1", gid, r.Owner, r.Version, who)
		}
	}
}
