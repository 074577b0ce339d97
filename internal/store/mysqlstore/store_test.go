package mysqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/mysqlstore"
	"github.com/concordtm/concord/internal/store/storetest"
	"github.com/concordtm/concord/internal/testenv"
)

// openTest opens a store on fresh tables of the test database, migrated,
// and drops them when tb ends.
func openTest(tb testing.TB, opts mysqlstore.Options) *mysqlstore.Store {
	tb.Helper()
	testenv.MariaDB(tb) // skips or fails when the server is unreachable
	if opts.TablePrefix == "" {
		opts.TablePrefix = testenv.UniqueName(tb, "cst") + "_"
	}
	s, err := mysqlstore.Open(tb.Context(), testenv.MariaDBDSN(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// The suite may have closed s; drop with a store of our own.
		c, err := mysqlstore.Open(context.Background(), testenv.MariaDBDSN(), opts)
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
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, mysqlstore.Options{}) })
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store { return openTest(b, mysqlstore.Options{}) })
}

// TestMigrateConcurrent runs Migrate from several stores at once, then
// again: none fails.
func TestMigrateConcurrent(t *testing.T) {
	testenv.MariaDB(t)
	opts := mysqlstore.Options{TablePrefix: testenv.UniqueName(t, "cst") + "_"}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := mysqlstore.Open(t.Context(), testenv.MariaDBDSN(), opts)
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			errs[i] = s.Migrate(t.Context())
		})
	}
	wg.Wait()
	s := openTest(t, opts) // migrates a second time, drops the tables at the end
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Migrate: %v", err)
	}
	if err := s.Commit(t.Context(), []store.Record{{GID: "g", Mode: "saga", Status: "running"}}); err != nil {
		t.Fatal(err)
	}
}

// TestNotMigrated: a store whose tables do not exist says so.
func TestNotMigrated(t *testing.T) {
	testenv.MariaDB(t)
	s, err := mysqlstore.Open(t.Context(), testenv.MariaDBDSN(), mysqlstore.Options{TablePrefix: testenv.UniqueName(t, "none") + "_"})
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
	_, err := mysqlstore.Open(t.Context(), "nobody@tcp(127.0.0.1:1)/none?timeout=2s", mysqlstore.Options{})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Open of a closed port: %v; want store.ErrUnavailable naming the address", err)
	}
}

// Several instances creating new transactions at once (fenced inserts of
// version 1, gids that sort after every stored one, as time-ordered gids
// do) and updating their own (version n) do not fail each other with
// InnoDB deadlocks. At REPEATABLE READ they did: each locking read took
// the gap at the end of the table, and each insert then waited for the
// other's gap lock.
func TestConcurrentFencedInsertsDoNotDeadlock(t *testing.T) {
	prefix := testenv.UniqueName(t, "cst") + "_"
	a := openTest(t, mysqlstore.Options{TablePrefix: prefix})
	b, err := mysqlstore.Open(t.Context(), testenv.MariaDBDSN(), mysqlstore.Options{TablePrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Commit(t.Context(), []store.Record{{GID: "g-0000", Mode: "saga", Status: "running", Owner: "a", Version: 1, Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		st, owner := a, "a"
		if w%2 == 1 {
			st, owner = b, "b"
		}
		wg.Go(func() {
			for i := range perWorker {
				gid := fmt.Sprintf("g-%02d-%04d", i, w) // every worker's next gid sorts last
				rec := store.Record{GID: gid, Mode: "saga", Status: "running", Owner: owner, Version: 1, Data: []byte("x")}
				if err := st.Commit(t.Context(), []store.Record{rec}); err != nil {
					errs <- fmt.Errorf("insert %s: %w", gid, err)
					continue
				}
				rec.Version, rec.Status = 2, "succeeded"
				if err := st.Commit(t.Context(), []store.Record{rec}); err != nil {
					errs <- fmt.Errorf("update %s: %w", gid, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		t.Fatalf("%d of %d commits failed; the first: %v", len(all), 2*workers*perWorker, all[0])
	}
}
