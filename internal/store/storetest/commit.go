package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/concordtm/concord/internal/store"
)

func testRoundtrip(t *testing.T, s store.Store) {
	rng := rand.New(rand.NewPCG(1, 2))
	want := []store.Record{
		record("rt-saga", "saga", "running", false, 1_700_000_000_000_000_001, randomData(rng, 300)),
		record("rt-tcc", "tcc", "succeeded", true, 1_700_000_000_000_000_002, []byte("done")),
		record("rt-empty", "msg", "prepared", false, 1_700_000_000_000_000_003, nil),
		record("rt-zeros", "2pc", "aborted", true, 1_700_000_000_000_000_004, make([]byte, 64)),
		record("rt/with:punct-and.dots", "3pc", "pre-committed", false, 5, []byte{0, 1, 2, 0xff}),
		{GID: "rt-minimal"},
	}
	commit(t, s, want...)
	for _, w := range want {
		checkRecord(t, mustGet(t, s, w.GID), w)
	}
}

func testDataIsCopied(t *testing.T, s store.Store) {
	data := []byte("original")
	commit(t, s, record("copy-1", "saga", "running", false, 10, data))
	copy(data, "XXXXXXXX")
	got := mustGet(t, s, "copy-1")
	if string(got.Data) != "original" {
		t.Fatalf("store kept a reference to the committed Data: got %q", got.Data)
	}
	copy(got.Data, "YYYYYYYY")
	if again := mustGet(t, s, "copy-1"); string(again.Data) != "original" {
		t.Fatalf("store returned an alias of its own Data: got %q", again.Data)
	}
}

func testReplace(t *testing.T, s store.Store) {
	first := record("rep-1", "saga", "running", false, 100, []byte("v1"))
	other := record("rep-2", "saga", "running", false, 101, []byte("other"))
	commit(t, s, first, other)

	second := first
	second.Status = "compensating"
	second.UpdatedAt = 5000
	second.Data = []byte("version two, longer than the first")
	commit(t, s, second)
	checkRecord(t, mustGet(t, s, "rep-1"), second)
	checkRecord(t, mustGet(t, s, "rep-2"), other)

	third := second
	third.Status = "failed"
	third.Finished = true
	third.UpdatedAt = 6000
	third.Data = nil
	commit(t, s, third)
	checkRecord(t, mustGet(t, s, "rep-1"), third)

	all := mustList(t, s, store.ListOptions{})
	checkGIDs(t, "List after replacing", all, []string{"rep-2", "rep-1"})
	if len(all) == 2 {
		checkRecord(t, all[1], third)
	}
}

// testReplaceMovesIndexes replaces records changing every indexed field and
// checks that every way of finding a record sees only the new values.
func testReplaceMovesIndexes(t *testing.T, s store.Store) {
	a := record("idx-a", "saga", "running", false, 100, []byte("a"))
	b := record("idx-b", "tcc", "trying", false, 200, []byte("b"))
	commit(t, s, a, b)

	a2 := a
	a2.Mode, a2.Status, a2.CreatedAt, a2.UpdatedAt = "tcc", "trying", 300, 400
	b2 := b
	b2.Status, b2.Finished, b2.UpdatedAt = "succeeded", true, 500
	commit(t, s, a2, b2)

	checkGIDs(t, "all", mustList(t, s, store.ListOptions{}), []string{"idx-a", "idx-b"})
	checkGIDs(t, "mode saga", mustList(t, s, store.ListOptions{Mode: "saga"}), nil)
	checkGIDs(t, "mode tcc", mustList(t, s, store.ListOptions{Mode: "tcc"}), []string{"idx-a", "idx-b"})
	checkGIDs(t, "status running", mustList(t, s, store.ListOptions{Status: "running"}), nil)
	checkGIDs(t, "status trying", mustList(t, s, store.ListOptions{Status: "trying"}), []string{"idx-a"})
	checkGIDs(t, "status succeeded", mustList(t, s, store.ListOptions{Status: "succeeded"}), []string{"idx-b"})
	checkGIDs(t, "before 300", mustList(t, s, store.ListOptions{Before: 300}), []string{"idx-b"})
	got := unfinished(t, s)
	if len(got) != 1 {
		t.Fatalf("Unfinished returned %d records, want only idx-a", len(got))
	}
	checkRecord(t, got["idx-a"], a2)
}

// testBatchVisibleAtOnce commits batches that move a group of records to
// the same new status while readers List the group; every List must see all
// records at the same version.
func testBatchVisibleAtOnce(t *testing.T, s store.Store) {
	const group, rounds = 8, 40
	batch := func(round int) []store.Record {
		b := make([]store.Record, group)
		for i := range b {
			b[i] = record(fmt.Sprintf("atom-%02d", i), "saga", fmt.Sprintf("gen-%03d", round), false,
				int64(1000+i), []byte(fmt.Sprintf("round %d", round)))
		}
		return b
	}
	commit(t, s, batch(0)...)

	ctx := t.Context()
	done := make(chan struct{})
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					errc <- nil
					return
				default:
				}
				rs, err := s.List(ctx, store.ListOptions{GIDPrefix: "atom-", Limit: group})
				if err != nil {
					errc <- fmt.Errorf("List: %w", err)
					return
				}
				if len(rs) != group {
					errc <- fmt.Errorf("List returned %d records, want %d", len(rs), group)
					return
				}
				for _, r := range rs {
					if r.Status != rs[0].Status || string(r.Data) != string(rs[0].Data) {
						errc <- fmt.Errorf("List saw a partial batch: %s is %s, %s is %s",
							rs[0].GID, rs[0].Status, r.GID, r.Status)
						return
					}
				}
			}
		})
	}
	for round := 1; round <= rounds; round++ {
		if err := s.Commit(ctx, batch(round)); err != nil {
			t.Errorf("Commit round %d: %v", round, err)
			break
		}
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Error(err)
		}
	}
}

// testCanceledCommit commits with a canceled context: the store may refuse
// or perform the write, but never half of it.
func testCanceledCommit(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	batch := []store.Record{
		record("cancel-1", "saga", "running", false, 1, []byte("1")),
		record("cancel-2", "saga", "running", false, 2, []byte("2")),
		record("cancel-3", "saga", "running", false, 3, []byte("3")),
	}
	err := s.Commit(ctx, batch)
	visible := 0
	for _, r := range batch {
		_, gerr := s.Get(t.Context(), r.GID)
		switch {
		case gerr == nil:
			visible++
		case !errors.Is(gerr, store.ErrNotFound):
			t.Fatalf("Get(%q): %v", r.GID, gerr)
		}
	}
	switch {
	case err != nil && visible != 0:
		t.Fatalf("Commit failed (%v) but %d of %d records are visible", err, visible, len(batch))
	case err == nil && visible != len(batch):
		t.Fatalf("Commit succeeded but only %d of %d records are visible", visible, len(batch))
	}
}

func testEmptyBatch(t *testing.T, s store.Store) {
	if err := s.Commit(t.Context(), nil); err != nil {
		t.Fatalf("Commit(nil): %v", err)
	}
	if err := s.Commit(t.Context(), []store.Record{}); err != nil {
		t.Fatalf("Commit(empty): %v", err)
	}
	if rs := mustList(t, s, store.ListOptions{}); len(rs) != 0 {
		t.Fatalf("List after empty commits returned %d records", len(rs))
	}
	if got := unfinished(t, s); len(got) != 0 {
		t.Fatalf("Unfinished after empty commits returned %d records", len(got))
	}
}

func testLargeData(t *testing.T, s store.Store) {
	rng := rand.New(rand.NewPCG(3, 4))
	big := record("large-1", "saga", "running", false, 42, randomData(rng, 1<<20))
	small := record("large-2", "saga", "running", false, 43, randomData(rng, 10))
	commit(t, s, big, small)
	checkRecord(t, mustGet(t, s, big.GID), big)
	rs := mustList(t, s, store.ListOptions{})
	checkGIDs(t, "List", rs, []string{"large-2", "large-1"})
	if len(rs) == 2 {
		checkRecord(t, rs[1], big)
	}
	checkRecord(t, unfinished(t, s)[big.GID], big)

	bigger := big
	bigger.Data = randomData(rng, 1<<20+1)
	bigger.UpdatedAt++
	commit(t, s, bigger)
	checkRecord(t, mustGet(t, s, big.GID), bigger)
}

func testNotFound(t *testing.T, s store.Store) {
	_, err := s.Get(t.Context(), "nf-missing")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a missing gid: got %v, want an error wrapping store.ErrNotFound", err)
	}
	commit(t, s, record("nf-present", "saga", "running", false, 1, nil))
	for _, gid := range []string{"nf-presen", "nf-present-", "NF-PRESENT", ""} {
		if _, err := s.Get(t.Context(), gid); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q): got %v, want an error wrapping store.ErrNotFound", gid, err)
		}
	}
}

// testConcurrentCommits commits from many goroutines at once while others
// read; run it under -race.
func testConcurrentCommits(t *testing.T, s store.Store) {
	const writers, commits, perBatch = 8, 15, 4
	ctx := t.Context()
	var wg sync.WaitGroup
	errc := make(chan error, writers+2)
	for w := range writers {
		wg.Go(func() {
			for c := range commits {
				batch := make([]store.Record, perBatch)
				for i := range batch {
					n := (w*commits+c)*perBatch + i
					batch[i] = record(fmt.Sprintf("conc-%d-%d-%d", w, c, i), "saga", "running",
						n%3 == 0, int64(n), []byte(fmt.Sprint(n)))
				}
				if err := s.Commit(ctx, batch); err != nil {
					errc <- fmt.Errorf("writer %d commit %d: %w", w, c, err)
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for i := range commits * 2 {
				if _, err := s.List(ctx, store.ListOptions{Limit: 10}); err != nil {
					errc <- fmt.Errorf("List: %w", err)
					return
				}
				if _, err := s.Get(ctx, fmt.Sprintf("conc-0-%d-0", i%commits)); err != nil && !errors.Is(err, store.ErrNotFound) {
					errc <- fmt.Errorf("Get: %w", err)
					return
				}
				if err := s.Unfinished(ctx, func(store.Record) error { return nil }); err != nil {
					errc <- fmt.Errorf("Unfinished: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	total := writers * commits * perBatch
	seen := make(map[string]bool)
	cursor := store.ListOptions{Limit: 37}
	for {
		page := mustList(t, s, cursor)
		for _, r := range page {
			if seen[r.GID] {
				t.Fatalf("List returned %q twice", r.GID)
			}
			seen[r.GID] = true
		}
		if len(page) < cursor.Limit {
			break
		}
		last := page[len(page)-1]
		cursor.Before, cursor.BeforeGID = last.CreatedAt, last.GID
	}
	if len(seen) != total {
		t.Fatalf("List found %d records, want %d", len(seen), total)
	}
	wantUnfinished := total - (total+2)/3
	if got := len(unfinished(t, s)); got != wantUnfinished {
		t.Fatalf("Unfinished returned %d records, want %d", got, wantUnfinished)
	}
}

// testClose checks that every method fails with ErrClosed after Close.
func testClose(t *testing.T, s store.Store) {
	commit(t, s, record("close-1", "saga", "running", false, 1, nil))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	checks := map[string]error{
		"Commit": s.Commit(ctx, []store.Record{record("close-2", "saga", "running", false, 2, nil)}),
		"Get": func() error {
			_, err := s.Get(ctx, "close-1")
			return err
		}(),
		"List": func() error {
			_, err := s.List(ctx, store.ListOptions{})
			return err
		}(),
		"Unfinished": s.Unfinished(ctx, func(store.Record) error { return nil }),
		"Close":      s.Close(),
	}
	if d, ok := s.(store.Deleter); ok {
		_, err := d.DeleteFinished(ctx, 1<<62, 10)
		checks["DeleteFinished"] = err
	}
	for name, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: got %v, want an error wrapping store.ErrClosed", name, err)
		}
	}
}

// testFreshHint: a record committed with the Fresh hint reads back like any
// other (the hint is not stored), and a later rewrite of it keeps every
// index right.
func testFreshHint(t *testing.T, s store.Store) {
	r := record("fresh-1", "saga", "running", false, 1_700_000_000_000_000_100, []byte("v1"))
	r.Fresh = true
	commit(t, s, r)
	got := mustGet(t, s, "fresh-1")
	if got.Fresh {
		t.Fatal("Get returned Fresh = true: the hint must not be stored")
	}
	r.Fresh = false
	checkRecord(t, got, r)
	r2 := record("fresh-1", "saga", "succeeded", true, r.CreatedAt, []byte("v2"))
	commit(t, s, r2)
	checkRecord(t, mustGet(t, s, "fresh-1"), r2)
	if recs, err := s.List(t.Context(), store.ListOptions{Status: "running", GIDPrefix: "fresh-"}); err != nil || len(recs) != 0 {
		t.Fatalf("List(status=running) after the rewrite: %d records, err %v; want none", len(recs), err)
	}
	n := 0
	if err := s.Unfinished(t.Context(), func(rec store.Record) error {
		if rec.GID == "fresh-1" {
			n++
		}
		return nil
	}); err != nil || n != 0 {
		t.Fatalf("Unfinished lists fresh-1 %d times after it finished (err %v)", n, err)
	}
}
