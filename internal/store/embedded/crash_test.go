package embedded

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/concordtm/concord/internal/store"
)

// The crash test re-runs the test binary as a writer process (see TestMain)
// that commits batches and prints "ack N" after Commit N returned. The
// test kills it with SIGKILL, so the store is never closed, reopens the
// directory and checks every acknowledged batch is there and the batch in
// flight is there entirely or not at all.
const (
	crashDirEnv    = "CONCORD_EMBEDDED_CRASH_DIR"
	crashEngineEnv = "CONCORD_EMBEDDED_CRASH_ENGINE"
	crashBatch     = 8
	crashAcks      = 40 // batches acknowledged before the kill
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		if err := crashWriter(dir, os.Getenv(crashEngineEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	// A goroutine that outlives the tests (a flusher or compaction a
	// Close left running) fails them.
	goleak.VerifyTestMain(m)
}

// crashBatchRecords returns batch n: new records for gids of batch n, and
// the previous batch's records rewritten as finished, so a crash can land in
// the middle of index maintenance.
func crashBatchRecords(n int) []store.Record {
	var recs []store.Record
	for i := range crashBatch {
		recs = append(recs, store.Record{
			GID: fmt.Sprintf("crash-%05d-%d", n, i), Mode: "saga", Status: "running",
			CreatedAt: int64(n), UpdatedAt: int64(n), Data: []byte(strings.Repeat("x", 512)),
		})
		if n > 0 {
			recs = append(recs, store.Record{
				GID: fmt.Sprintf("crash-%05d-%d", n-1, i), Mode: "saga", Status: "succeeded", Finished: true,
				CreatedAt: int64(n - 1), UpdatedAt: int64(n), Data: []byte("done"),
			})
		}
	}
	return recs
}

// crashWriter commits batches until it is killed; it stops by itself after
// far more batches than the test waits for.
func crashWriter(dir, engine string) error {
	s, err := Open(dir, Options{Engine: engine})
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	for n := range 100 * crashAcks {
		if err := s.Commit(context.Background(), crashBatchRecords(n)); err != nil {
			return err
		}
		fmt.Fprintf(out, "ack %d\n", n)
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return errors.New("crash writer was not killed")
}

func TestKill9DuringCommits(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashEngineEnv+"="+engine)
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			acked := -1
			lines := bufio.NewScanner(stdout)
			for acked < crashAcks && lines.Scan() {
				n, err := strconv.Atoi(strings.TrimPrefix(lines.Text(), "ack "))
				if err != nil {
					t.Fatalf("writer printed %q", lines.Text())
				}
				acked = n
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait() // killed: the error only says so
			if acked < crashAcks {
				t.Fatalf("writer stopped after %d acknowledged batches", acked+1)
			}

			s := openTest(t, dir, engine)
			defer s.Close()
			checkIndexes(t, s)
			// The writer may have committed more batches after the last
			// ack we read: find the last batch that is there, then expect
			// exactly the state after it, which also shows no later batch
			// is partly there.
			last := acked
			for {
				_, err := s.Get(t.Context(), fmt.Sprintf("crash-%05d-0", last+1))
				if errors.Is(err, store.ErrNotFound) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				last++
			}
			want := make(map[string]store.Record)
			for n := range last + 1 {
				for _, r := range crashBatchRecords(n) {
					want[r.GID] = r
				}
			}
			for n := range last + 2 {
				for _, r := range crashBatchRecords(n) {
					w, ok := want[r.GID]
					got, err := s.Get(t.Context(), r.GID)
					switch {
					case !ok && !errors.Is(err, store.ErrNotFound):
						t.Fatalf("batch %d: Get(%q) = %s, %v; want not found", n, r.GID, got.Status, err)
					case ok && err != nil:
						t.Fatalf("batch %d: Get(%q): %v", n, r.GID, err)
					case ok && (got.Status != w.Status || got.Finished != w.Finished || string(got.Data) != string(w.Data)):
						t.Fatalf("batch %d: Get(%q) is %s (finished %v), want %s", n, r.GID, got.Status, got.Finished, w.Status)
					}
				}
			}
			live := 0
			err = s.Unfinished(t.Context(), func(r store.Record) error {
				if !strings.HasPrefix(r.GID, fmt.Sprintf("crash-%05d-", last)) {
					return fmt.Errorf("unfinished record %q is not from the last batch %d", r.GID, last)
				}
				live++
				return nil
			})
			if err != nil || live != crashBatch {
				t.Fatalf("Unfinished: %d records, %v; want %d", live, err, crashBatch)
			}
			t.Logf("%d batches acknowledged, %d recovered", acked+1, last+1)
		})
	}
}
