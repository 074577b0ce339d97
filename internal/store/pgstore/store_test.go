package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/pgstore"
	"github.com/concordtm/concord/internal/store/storetest"
	"github.com/concordtm/concord/internal/testenv"
)

// openTest opens a store on fresh tables of the test database, migrated,
// and drops them when tb ends.
func openTest(tb testing.TB, opts pgstore.Options) *pgstore.Store {
	tb.Helper()
	testenv.Postgres(tb) // skips or fails when the server is unreachable
	if opts.TablePrefix == "" {
		opts.TablePrefix = testenv.UniqueName(tb, "cst") + "_"
	}
	s, err := pgstore.Open(tb.Context(), testenv.PostgresDSN(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// The suite may have closed s; drop with a store of our own.
		c, err := pgstore.Open(context.Background(), testenv.PostgresDSN(), opts)
		if err != nil {
			tb.Errorf("cleanup: %v", err)
			return
		}
		defer c.Close()
		if err := c.Drop(context.Background()); err != nil {
			tb.Errorf("cleanup: %v", err)
		}
	})
	if err := s.Migrate(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, pgstore.Options{}) })
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store { return openTest(b, pgstore.Options{}) })
}

// TestMigrateConcurrent runs Migrate from several stores at once, then
// again: none fails.
func TestMigrateConcurrent(t *testing.T) {
	testenv.Postgres(t)
	schema := testenv.UniqueName(t, "cst_schema")
	opts := pgstore.Options{Schema: schema, TablePrefix: "x_"}
	admin := testenv.Postgres(t)
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := pgstore.Open(t.Context(), testenv.PostgresDSN(), opts)
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			errs[i] = s.Migrate(t.Context())
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Migrate: %v", err)
	}
	s := openTest(t, opts) // migrates a second time
	if err := s.Commit(t.Context(), []store.Record{{GID: "g", Mode: "saga", Status: "running"}}); err != nil {
		t.Fatal(err)
	}
}

// TestNotMigrated: a store whose tables do not exist says so.
func TestNotMigrated(t *testing.T) {
	testenv.Postgres(t)
	s, err := pgstore.Open(t.Context(), testenv.PostgresDSN(), pgstore.Options{TablePrefix: testenv.UniqueName(t, "none") + "_"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Get(t.Context(), "g")
	if err == nil || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "run Migrate") {
		t.Fatalf("Get on missing tables: %v; want an error that says to run Migrate", err)
	}
}

func TestUnreachable(t *testing.T) {
	_, err := pgstore.Open(t.Context(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=2", pgstore.Options{})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Open of a closed port: %v; want store.ErrUnavailable naming the address", err)
	}
}
