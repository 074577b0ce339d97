package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/store"
)

// TestCommitAsync applies two batches before waiting for either: the
// second is applied (readable) while the first may still be in its fsync,
// both end durable and readable, and a reopened store has both.
func TestCommitAsync(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir, engine)
			ctx := context.Background()
			rec := func(gid, status string, finished bool) store.Record {
				return store.Record{GID: gid, Mode: "saga", Status: status, Finished: finished, CreatedAt: 1, UpdatedAt: 2, Data: []byte(gid + status)}
			}
			wait1, err := s.CommitAsync(ctx, []store.Record{rec("a1", "running", false)})
			if err != nil {
				t.Fatal(err)
			}
			wait2, err := s.CommitAsync(ctx, []store.Record{rec("a2", "running", false), rec("a1", "succeeded", true)})
			if err != nil {
				t.Fatal(err)
			}
			// Applied: visible before anyone waited.
			if got, err := s.Get(ctx, "a1"); err != nil || got.Status != "succeeded" {
				t.Fatalf("a1 before the waits: %+v, %v; want the second batch's state", got, err)
			}
			if err := wait2(); err != nil {
				t.Fatal(err)
			}
			if err := wait1(); err != nil {
				t.Fatal(err)
			}
			unfinished := 0
			if err := s.Unfinished(ctx, func(store.Record) error { unfinished++; return nil }); err != nil {
				t.Fatal(err)
			}
			if unfinished != 1 {
				t.Fatalf("%d unfinished records, want 1 (a2): the index missed the second batch's rewrite of a1", unfinished)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, dir, engine)
			defer s.Close()
			for gid, status := range map[string]string{"a1": "succeeded", "a2": "running"} {
				if got, err := s.Get(ctx, gid); err != nil || got.Status != status {
					t.Fatalf("%s after reopening: %+v, %v; want %s", gid, got, err, status)
				}
			}
			checkIndexes(t, s)
		})
	}
}

// TestCloseWaitsForCommitAsync: Close does not close the engine under a
// batch whose wait has not been called yet.
func TestCloseWaitsForCommitAsync(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			s := openTest(t, t.TempDir(), engine)
			wait, err := s.CommitAsync(context.Background(), []store.Record{{GID: "c1", Mode: "saga", Status: "running", CreatedAt: 1, UpdatedAt: 1}})
			if err != nil {
				t.Fatal(err)
			}
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case err := <-closed:
				t.Fatalf("Close returned (%v) with a commit's wait outstanding", err)
			case <-time.After(50 * time.Millisecond):
			}
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
			if _, err := s.CommitAsync(context.Background(), nil); err != store.ErrClosed {
				t.Fatalf("CommitAsync after Close: %v, want ErrClosed", err)
			}
		})
	}
}
