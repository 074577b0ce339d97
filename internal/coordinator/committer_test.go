package coordinator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/memstore"
)

// gatedStore is an AsyncCommitter whose batches are applied at once (to a
// memstore) and become durable only when the test opens their gate.
type gatedStore struct {
	*memstore.Store
	mu      sync.Mutex
	gates   []chan error // one per CommitAsync, in call order
	applied chan []store.Record
}

func (g *gatedStore) CommitAsync(ctx context.Context, batch []store.Record) (func() error, error) {
	if err := g.Store.Commit(ctx, batch); err != nil {
		return nil, err
	}
	gate := make(chan error, 1)
	g.mu.Lock()
	g.gates = append(g.gates, gate)
	g.mu.Unlock()
	g.applied <- append([]store.Record(nil), batch...)
	return func() error { return <-gate }, nil
}

func (g *gatedStore) gate(i int) chan error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gates[i]
}

// told reports whether ch yields within d.
func told(ch chan error, d time.Duration) (error, bool) {
	select {
	case err := <-ch:
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// Waits: for something that must not happen, a moment; for something
// that must, long enough for a loaded machine.
const (
	notYet = 20 * time.Millisecond
	soon   = 10 * time.Second
)

// TestCommitterPipelines: the committer applies a second batch while the
// first is not durable yet, tells no writer before its batch is durable,
// and tells them in batch order even when a later batch is durable first.
func TestCommitterPipelines(t *testing.T) {
	st := &gatedStore{Store: memstore.New(), applied: make(chan []store.Record, 8)}
	c := newCommitter(st, 16, nil)
	defer c.stop()

	a := c.enqueue(store.Record{GID: "a", Status: "running"})
	if got := <-st.applied; len(got) != 1 || got[0].GID != "a" {
		t.Fatalf("first batch %v, want [a]", got)
	}
	b := c.enqueue(store.Record{GID: "b", Status: "running"})
	select {
	case got := <-st.applied:
		if len(got) != 1 || got[0].GID != "b" {
			t.Fatalf("second batch %v, want [b]", got)
		}
	case <-time.After(soon):
		t.Fatal("the second batch was not applied while the first waited for its fsync")
	}
	if _, ok := told(a, notYet); ok {
		t.Fatal("a's writer told before its batch was durable")
	}
	st.gate(1) <- nil // b durable first
	if _, ok := told(b, notYet); ok {
		t.Fatal("b's writer told before a's, whose batch came first")
	}
	st.gate(0) <- nil
	if err, ok := told(a, soon); !ok || err != nil {
		t.Fatalf("a: told %v, err %v; want told, nil", ok, err)
	}
	if err, ok := told(b, soon); !ok || err != nil {
		t.Fatalf("b: told %v, err %v; want told, nil", ok, err)
	}

	// A batch whose fsync fails tells its writers the error.
	boom := errors.New("fsync failed")
	d := c.enqueue(store.Record{GID: "d", Status: "running"})
	<-st.applied
	st.gate(2) <- boom
	if err, ok := told(d, soon); !ok || !errors.Is(err, boom) {
		t.Fatalf("d: told %v, err %v; want the fsync error", ok, err)
	}
}

// TestCommitterPipelineDepth: at most pipelineDepth batches are applied
// and not yet durable; the next waits.
func TestCommitterPipelineDepth(t *testing.T) {
	st := &gatedStore{Store: memstore.New(), applied: make(chan []store.Record, 16)}
	c := newCommitter(st, 1, nil)
	var writers []chan error
	for i := range pipelineDepth + 2 {
		writers = append(writers, c.enqueue(store.Record{GID: string(rune('a' + i)), Status: "running"}))
	}
	for range pipelineDepth + 1 { // the one more is held by the loop, ready to hand over
		<-st.applied
	}
	select {
	case got := <-st.applied:
		t.Fatalf("batch %v applied with %d batches in flight", got, pipelineDepth+1)
	case <-time.After(50 * time.Millisecond):
	}
	for i := range pipelineDepth + 2 {
		if i == pipelineDepth+1 {
			<-st.applied
		}
		st.gate(i) <- nil
		if err, ok := told(writers[i], soon); !ok || err != nil {
			t.Fatalf("writer %d: told %v, err %v", i, ok, err)
		}
	}
	c.stop()
}
