package storetest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/store"
)

// newestFirst orders records as List must: CreatedAt descending, then GID
// descending.
func newestFirst(a, b store.Record) int {
	if c := cmp.Compare(b.CreatedAt, a.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(b.GID, a.GID)
}

// expect returns the gids of the records matching opts, in List order,
// ignoring the limit.
func expect(all []store.Record, opts store.ListOptions) []string {
	sorted := slices.Clone(all)
	slices.SortFunc(sorted, newestFirst)
	var gids []string
	for _, r := range sorted {
		if matches(r, opts) {
			gids = append(gids, r.GID)
		}
	}
	return gids
}

// matches reports whether r passes the filters and the cursor of opts.
func matches(r store.Record, opts store.ListOptions) bool {
	switch {
	case opts.Status != "" && r.Status != opts.Status,
		opts.Mode != "" && r.Mode != opts.Mode,
		!strings.HasPrefix(r.GID, opts.GIDPrefix):
		return false
	case opts.Before == 0:
		return true
	case r.CreatedAt < opts.Before:
		return true
	default:
		return r.CreatedAt == opts.Before && opts.BeforeGID != "" && r.GID < opts.BeforeGID
	}
}

// population commits n records with many CreatedAt ties, several modes,
// statuses and gid prefixes, in random order and random batches.
func population(t *testing.T, s store.Store, n int, seed uint64) []store.Record {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	modes := []string{"saga", "tcc", "msg"}
	statuses := []string{"running", "succeeded", "failed", "compensating"}
	prefixes := []string{"a-", "b-", "ab-"}
	all := make([]store.Record, n)
	for i := range all {
		status := statuses[rng.IntN(len(statuses))]
		all[i] = store.Record{
			GID:       fmt.Sprintf("%s%04d", prefixes[rng.IntN(len(prefixes))], rng.IntN(10*n)+i*10*n),
			Mode:      modes[rng.IntN(len(modes))],
			Status:    status,
			Finished:  status == "succeeded" || status == "failed",
			CreatedAt: 1_000_000 + int64(rng.IntN(n/4+1))*1000,
			UpdatedAt: 2_000_000 + int64(i),
			Data:      []byte(fmt.Sprint(i)),
		}
	}
	shuffled := slices.Clone(all)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for len(shuffled) > 0 {
		k := min(len(shuffled), 1+rng.IntN(20))
		commit(t, s, shuffled[:k]...)
		shuffled = shuffled[k:]
	}
	return all
}

func testListOrder(t *testing.T, s store.Store) {
	all := population(t, s, 60, 7)
	got := mustList(t, s, store.ListOptions{Limit: 1000})
	checkGIDs(t, "List", got, expect(all, store.ListOptions{}))
	byGID := make(map[string]store.Record, len(all))
	for _, r := range all {
		byGID[r.GID] = r
	}
	for _, r := range got {
		checkRecord(t, r, byGID[r.GID])
	}
	checkGIDs(t, "List limit 5", mustList(t, s, store.ListOptions{Limit: 5}), expect(all, store.ListOptions{})[:5])
}

func testListFilters(t *testing.T, s store.Store) {
	all := population(t, s, 120, 11)
	cases := []store.ListOptions{
		{Status: "running"},
		{Status: "failed"},
		{Status: "no-such-status"},
		{Mode: "tcc"},
		{Mode: "no-such-mode"},
		{GIDPrefix: "a-"},
		{GIDPrefix: "ab-"},
		{GIDPrefix: "a"},
		{GIDPrefix: "zzz"},
		{Status: "running", Mode: "saga"},
		{Status: "succeeded", GIDPrefix: "b-"},
		{Mode: "msg", GIDPrefix: "ab-"},
		{Status: "compensating", Mode: "tcc", GIDPrefix: "a"},
	}
	for _, opts := range cases {
		opts.Limit = 1000
		checkGIDs(t, fmt.Sprintf("List(%+v)", opts), mustList(t, s, opts), expect(all, opts))
	}
	// Filters combined with a cursor and a small limit.
	for _, opts := range cases {
		want := expect(all, opts)
		if len(want) < 3 {
			continue
		}
		pivot := all[slices.IndexFunc(all, func(r store.Record) bool { return r.GID == want[len(want)/2] })]
		opts.Before, opts.BeforeGID, opts.Limit = pivot.CreatedAt, pivot.GID, 4
		want = expect(all, opts)
		want = want[:min(4, len(want))]
		checkGIDs(t, fmt.Sprintf("List(%+v)", opts), mustList(t, s, opts), want)
	}
}

// testListPaging walks every record with the (Before, BeforeGID) cursor and
// checks each is returned exactly once, in order, with and without filters.
func testListPaging(t *testing.T, s store.Store) {
	all := population(t, s, 250, 13)
	for _, filter := range []store.ListOptions{{}, {Status: "running"}, {Mode: "saga"}, {GIDPrefix: "b-"}} {
		for _, limit := range []int{1, 7, 17, 100} {
			opts := filter
			opts.Limit = limit
			var got []store.Record
			for pages := 0; ; pages++ {
				if pages > len(all) {
					t.Fatalf("paging %+v does not end", filter)
				}
				page := mustList(t, s, opts)
				if len(page) > limit {
					t.Fatalf("List(%+v) returned %d records", opts, len(page))
				}
				got = append(got, page...)
				if len(page) < limit {
					break
				}
				last := page[len(page)-1]
				opts.Before, opts.BeforeGID = last.CreatedAt, last.GID
			}
			checkGIDs(t, fmt.Sprintf("pages of %d of %+v", limit, filter), got, expect(all, filter))
		}
	}
}

// testListBeforeStrict checks Before without BeforeGID excludes every record
// created at exactly Before.
func testListBeforeStrict(t *testing.T, s store.Store) {
	commit(t, s,
		record("bs-a", "saga", "running", false, 100, nil),
		record("bs-b", "saga", "running", false, 200, nil),
		record("bs-c", "saga", "running", false, 200, nil),
		record("bs-d", "saga", "running", false, 300, nil),
	)
	checkGIDs(t, "Before 200", mustList(t, s, store.ListOptions{Before: 200}), []string{"bs-a"})
	checkGIDs(t, "Before 200 BeforeGID bs-c", mustList(t, s, store.ListOptions{Before: 200, BeforeGID: "bs-c"}),
		[]string{"bs-b", "bs-a"})
	checkGIDs(t, "Before 200 BeforeGID bs-z", mustList(t, s, store.ListOptions{Before: 200, BeforeGID: "bs-z"}),
		[]string{"bs-c", "bs-b", "bs-a"})
	checkGIDs(t, "Before 301", mustList(t, s, store.ListOptions{Before: 301}), []string{"bs-d", "bs-c", "bs-b", "bs-a"})
	checkGIDs(t, "Before 100", mustList(t, s, store.ListOptions{Before: 100}), nil)
}

func testListDefaultLimit(t *testing.T, s store.Store) {
	const n = 130
	batch := make([]store.Record, n)
	for i := range batch {
		batch[i] = record(fmt.Sprintf("dl-%03d", i), "saga", "running", false, int64(i), nil)
	}
	commit(t, s, batch...)
	for _, limit := range []int{0, -1} {
		got := mustList(t, s, store.ListOptions{Limit: limit})
		if len(got) != 100 {
			t.Fatalf("List(Limit: %d) returned %d records, want the default of 100", limit, len(got))
		}
		if got[0].GID != "dl-129" || got[99].GID != "dl-030" {
			t.Fatalf("List(Limit: %d) returned %s..%s, want dl-129..dl-030", limit, got[0].GID, got[99].GID)
		}
	}
	if got := mustList(t, s, store.ListOptions{Limit: 1000}); len(got) != n {
		t.Fatalf("List(Limit: 1000) returned %d records, want %d", len(got), n)
	}
}
