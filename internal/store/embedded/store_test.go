package embedded

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/memstore"
	"github.com/concordtm/concord/internal/store/storetest"
)

var engines = []string{EngineBolt, EnginePebble}

func openTest(tb testing.TB, dir, engine string) *Store {
	tb.Helper()
	s, err := Open(dir, Options{Engine: engine})
	if err != nil {
		tb.Fatalf("Open(%s): %v", engine, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				dir := t.TempDir()
				// Runs after the suite closed the store: reopen it and
				// check the indexes it left.
				t.Cleanup(func() {
					s := openTest(t, dir, engine)
					defer s.Close()
					checkIndexes(t, s)
				})
				return openTest(t, dir, engine)
			})
		})
	}
}

func BenchmarkStore(b *testing.B) {
	for _, engine := range engines {
		b.Run(engine, func(b *testing.B) {
			storetest.RunBenchmarks(b, func(b *testing.B) store.Store {
				return openTest(b, b.TempDir(), engine)
			})
		})
	}
}

func TestReopen(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir, engine)
			want := []store.Record{
				{GID: "a", Mode: "saga", Status: "running", CreatedAt: 1, UpdatedAt: 2, Data: []byte("a")},
				{GID: "b", Mode: "tcc", Status: "succeeded", Finished: true, CreatedAt: 3, UpdatedAt: 4},
			}
			if err := s.Commit(t.Context(), want); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, dir, engine)
			defer s.Close()
			for _, w := range want {
				got, err := s.Get(t.Context(), w.GID)
				if err != nil || got.Status != w.Status || string(got.Data) != string(w.Data) {
					t.Fatalf("Get(%q) after reopen = %+v, %v; want %+v", w.GID, got, err, w)
				}
			}
			checkIndexes(t, s)
		})
	}
}

func TestOpenRefusesOtherEngine(t *testing.T) {
	for i, engine := range engines {
		dir := t.TempDir()
		s := openTest(t, dir, engine)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		other := engines[1-i]
		if s, err := Open(dir, Options{Engine: other}); err == nil {
			s.Close()
			t.Fatalf("Open with %s of a %s directory succeeded", other, engine)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{Engine: "leveldb"}).Validate(); err == nil {
		t.Fatal("Validate accepted an unknown engine")
	}
	if _, err := Open(t.TempDir(), Options{Engine: "leveldb"}); err == nil {
		t.Fatal("Open accepted an unknown engine")
	}
	s := openTest(t, t.TempDir(), "")
	defer s.Close()
	if s.Engine() != DefaultEngine {
		t.Fatalf("Engine() = %q, want the default %q", s.Engine(), DefaultEngine)
	}
}

func TestSchemaVersionChecked(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir, engine)
			err := s.eng.update(func(_ reader, w writer) error {
				return w.set(versionKey, []byte{schemaVersion + 1})
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err := Open(dir, Options{Engine: engine}); !errors.Is(err, store.ErrCorrupt) {
				if err == nil {
					s.Close()
				}
				t.Fatalf("Open of a newer schema: got %v, want store.ErrCorrupt", err)
			}
		})
	}
}

// TestMatchesMemstore applies the same random commits and deletions to the
// embedded store and to memstore and compares what they return.
func TestMatchesMemstore(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 0))
			s := openTest(t, t.TempDir(), engine)
			defer s.Close()
			m := memstore.New()
			ctx := t.Context()
			statuses := []string{"", "running", "aborting", "succeeded", "failed"}
			modes := []string{"", "saga", "tcc"}
			for step := range 150 {
				if rng.IntN(10) == 0 {
					cutoff, limit := int64(rng.IntN(step+1)), rng.IntN(5)
					n1, err1 := s.DeleteFinished(ctx, cutoff, limit)
					n2, err2 := m.DeleteFinished(ctx, cutoff, limit)
					if err1 != nil || err2 != nil || n1 != n2 {
						t.Fatalf("step %d: DeleteFinished = %d, %v; memstore %d, %v", step, n1, err1, n2, err2)
					}
					continue
				}
				seen := make(map[string]bool)
				var batch []store.Record
				for range 1 + rng.IntN(8) {
					gid := fmt.Sprintf("g%02d", rng.IntN(40))
					if seen[gid] {
						continue
					}
					seen[gid] = true
					status := statuses[rng.IntN(len(statuses))]
					batch = append(batch, store.Record{
						GID: gid, Mode: modes[rng.IntN(len(modes))], Status: status,
						Finished:  status == "succeeded" || status == "failed",
						CreatedAt: int64(rng.IntN(20)), UpdatedAt: int64(step),
						Data: []byte(fmt.Sprint(step)),
					})
				}
				if err := s.Commit(ctx, batch); err != nil {
					t.Fatal(err)
				}
				if err := m.Commit(ctx, batch); err != nil {
					t.Fatal(err)
				}
				opts := store.ListOptions{
					Status: statuses[rng.IntN(len(statuses))], Mode: modes[rng.IntN(len(modes))],
					GIDPrefix: []string{"", "g", "g1", "g3"}[rng.IntN(4)], Limit: rng.IntN(12),
				}
				if rng.IntN(2) == 0 {
					opts.Before, opts.BeforeGID = int64(rng.IntN(20)), fmt.Sprintf("g%02d", rng.IntN(40))
				}
				got, err1 := s.List(ctx, opts)
				want, err2 := m.List(ctx, opts)
				if err1 != nil || err2 != nil || !sameGIDs(got, want) {
					t.Fatalf("step %d: List(%+v) = %v, %v; memstore %v, %v", step, opts, gids(got), err1, gids(want), err2)
				}
			}
			var got, want []string
			collect := func(dst *[]string) func(store.Record) error {
				return func(r store.Record) error { *dst = append(*dst, r.GID); return nil }
			}
			if err := s.Unfinished(ctx, collect(&got)); err != nil {
				t.Fatal(err)
			}
			if err := m.Unfinished(ctx, collect(&want)); err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("Unfinished = %v, memstore %v", got, want)
			}
			checkIndexes(t, s)
		})
	}
}

func gids(rs []store.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.GID
	}
	return out
}

func sameGIDs(a, b []store.Record) bool { return slices.Equal(gids(a), gids(b)) }
