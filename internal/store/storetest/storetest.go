// Package storetest is the conformance suite that every store.Store backend
// must pass, plus the benchmarks used to compare backends.
//
// A backend's test calls Run with a function that opens a fresh, empty
// store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := embedded.Open(t.TempDir(), embedded.Options{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// Run closes every store it opens when the subtest that opened it ends, and
// accepts an error wrapping store.ErrClosed from that final Close (some
// subtests close the store themselves). The open function may register its
// own cleanups, for example to drop a database schema.
//
// The suite also checks fenced writes (Record.Version, store.ConflictError)
// on every backend, and store.Leaser on the backends that implement it: its
// subtests pass trivially on the others. It checks store.Meta on every
// backend: a store without it fails. Leaser subtests use ttls below a
// second and poll, so they take about a second in all.
//
// Besides what store.Store documents, the suite checks two properties that
// follow from "Commit is atomic": a single List call sees each Commit either
// entirely or not at all, and a Commit that returns an error leaves nothing of
// its batch visible. It also checks that a store does not alias the Data
// slices passed to Commit or returned to the caller.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/concordtm/concord/internal/store"
)

// Run runs the conformance suite against the stores returned by open. Each
// subtest opens its own store, so open must return an empty store every
// time it is called.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CommitGetRoundtrip", testRoundtrip},
		{"DataIsCopied", testDataIsCopied},
		{"Replace", testReplace},
		{"FreshHint", testFreshHint},
		{"ReplaceMovesIndexes", testReplaceMovesIndexes},
		{"BatchVisibleAtOnce", testBatchVisibleAtOnce},
		{"CanceledCommitAllOrNothing", testCanceledCommit},
		{"EmptyBatch", testEmptyBatch},
		{"LargeData", testLargeData},
		{"NotFound", testNotFound},
		{"ListOrder", testListOrder},
		{"ListFilters", testListFilters},
		{"ListPaging", testListPaging},
		{"ListBeforeStrict", testListBeforeStrict},
		{"ListDefaultLimit", testListDefaultLimit},
		{"Unfinished", testUnfinished},
		{"UnfinishedStopsOnError", testUnfinishedStops},
		{"ConcurrentCommits", testConcurrentCommits},
		{"Deleter", testDeleter},
		{"Close", testClose},
		{"VersionInsertIfAbsent", testVersionInsert},
		{"VersionChain", testVersionChain},
		{"VersionConflictAllOrNothing", testVersionAllOrNothing},
		{"VersionZeroUnconditional", testVersionZero},
		{"OwnerVersionRoundtrip", testOwnerRoundtrip},
		{"VersionConcurrentWriters", testVersionRace},
	}
	tests = append(tests, leaserTests...)
	tests = append(tests, metaTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, openStore(t, open))
		})
	}
}

// openStore opens a store and closes it when t ends.
func openStore(t *testing.T, open func(t *testing.T) store.Store) store.Store {
	t.Helper()
	s := open(t)
	if s == nil {
		t.Fatal("open returned a nil store")
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// commit commits batch and fails the test on error.
func commit(t testing.TB, s store.Store, batch ...store.Record) {
	t.Helper()
	if err := s.Commit(t.Context(), batch); err != nil {
		t.Fatalf("Commit(%d records): %v", len(batch), err)
	}
}

// mustGet returns the record for gid and fails the test on error.
func mustGet(t testing.TB, s store.Store, gid string) store.Record {
	t.Helper()
	r, err := s.Get(t.Context(), gid)
	if err != nil {
		t.Fatalf("Get(%q): %v", gid, err)
	}
	return r
}

// mustList runs List and fails the test on error.
func mustList(t testing.TB, s store.Store, opts store.ListOptions) []store.Record {
	t.Helper()
	rs, err := s.List(t.Context(), opts)
	if err != nil {
		t.Fatalf("List(%+v): %v", opts, err)
	}
	return rs
}

// unfinished collects every record Unfinished reports, keyed by gid, and
// fails the test if a gid is reported twice.
func unfinished(t testing.TB, s store.Store) map[string]store.Record {
	t.Helper()
	got := make(map[string]store.Record)
	err := s.Unfinished(t.Context(), func(r store.Record) error {
		if _, dup := got[r.GID]; dup {
			return fmt.Errorf("gid %q reported twice", r.GID)
		}
		got[r.GID] = r
		return nil
	})
	if err != nil {
		t.Fatalf("Unfinished: %v", err)
	}
	return got
}

// sameRecord reports how got differs from want, or "" when they are equal.
// A nil and an empty Data are equal.
func sameRecord(got, want store.Record) string {
	switch {
	case got.GID != want.GID:
		return fmt.Sprintf("GID = %q, want %q", got.GID, want.GID)
	case got.Mode != want.Mode:
		return fmt.Sprintf("%s: Mode = %q, want %q", want.GID, got.Mode, want.Mode)
	case got.Status != want.Status:
		return fmt.Sprintf("%s: Status = %q, want %q", want.GID, got.Status, want.Status)
	case got.Finished != want.Finished:
		return fmt.Sprintf("%s: Finished = %v, want %v", want.GID, got.Finished, want.Finished)
	case got.CreatedAt != want.CreatedAt:
		return fmt.Sprintf("%s: CreatedAt = %d, want %d", want.GID, got.CreatedAt, want.CreatedAt)
	case got.UpdatedAt != want.UpdatedAt:
		return fmt.Sprintf("%s: UpdatedAt = %d, want %d", want.GID, got.UpdatedAt, want.UpdatedAt)
	case got.Owner != want.Owner:
		return fmt.Sprintf("%s: Owner = %q, want %q", want.GID, got.Owner, want.Owner)
	case got.Version != want.Version:
		return fmt.Sprintf("%s: Version = %d, want %d", want.GID, got.Version, want.Version)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Sprintf("%s: Data differs (%d bytes, want %d)", want.GID, len(got.Data), len(want.Data))
	}
	return ""
}

// checkRecord fails the test when got differs from want.
func checkRecord(t testing.TB, got, want store.Record) {
	t.Helper()
	if d := sameRecord(got, want); d != "" {
		t.Error(d)
	}
}

// checkGIDs fails the test unless the records' gids are exactly want, in
// order.
func checkGIDs(t testing.TB, what string, got []store.Record, want []string) {
	t.Helper()
	gids := make([]string, len(got))
	for i, r := range got {
		gids[i] = r.GID
	}
	if len(gids) != len(want) {
		t.Errorf("%s: got %d records %q, want %d %q", what, len(gids), gids, len(want), want)
		return
	}
	for i := range gids {
		if gids[i] != want[i] {
			t.Errorf("%s: record %d is %q, want %q\n got: %q\nwant: %q", what, i, gids[i], want[i], gids, want)
			return
		}
	}
}

// randomData returns n pseudo-random bytes.
func randomData(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// record builds a record with every field set.
func record(gid, mode, status string, finished bool, created int64, data []byte) store.Record {
	return store.Record{
		GID:       gid,
		Mode:      mode,
		Status:    status,
		Finished:  finished,
		CreatedAt: created,
		UpdatedAt: created + 1000,
		Data:      data,
	}
}
