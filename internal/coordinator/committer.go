package coordinator

import (
	"context"
	"time"

	"github.com/concordtm/concord/internal/failpoint"
	"github.com/concordtm/concord/internal/store"
)

// committer implements group commit: writes from many transactions that
// arrive while a Commit is in progress are merged into the next Commit, so
// they share one fsync. Writes are applied in arrival order; a later write
// of the same gid in a batch replaces an earlier one.
type committer struct {
	store    store.Store
	in       chan *write
	maxBatch int
	observe  func(records int, d time.Duration, err error)
	done     chan struct{}
}

type write struct {
	rec  store.Record
	done chan error
}

func newCommitter(s store.Store, maxBatch int, observe func(int, time.Duration, error)) *committer {
	c := &committer{store: s, in: make(chan *write, 4*maxBatch), maxBatch: maxBatch, observe: observe, done: make(chan struct{})}
	go c.loop()
	return c
}

// enqueue hands a record to the committer. The returned channel yields
// the outcome once the record is durable (nil) or failed.
func (c *committer) enqueue(rec store.Record) chan error {
	w := &write{rec: rec, done: make(chan error, 1)}
	c.in <- w
	return w.done
}

// stop ends the loop after the writes already queued.
func (c *committer) stop() {
	close(c.in)
	<-c.done
}

func (c *committer) loop() {
	defer close(c.done)
	batch := make([]*write, 0, c.maxBatch)
	index := make(map[string]int, c.maxBatch)
	records := make([]store.Record, 0, c.maxBatch)
	for {
		w, ok := <-c.in
		if !ok {
			return
		}
		batch = append(batch[:0], w)
	drain:
		for len(batch) < c.maxBatch {
			select {
			case w, ok := <-c.in:
				if !ok {
					break drain
				}
				batch = append(batch, w)
			default:
				break drain
			}
		}
		records = records[:0]
		clear(index)
		for _, w := range batch {
			if i, ok := index[w.rec.GID]; ok {
				records[i] = w.rec
				continue
			}
			index[w.rec.GID] = len(records)
			records = append(records, w.rec)
		}
		failpoint.Hit(failpoint.BeforeCommitSync)
		start := time.Now()
		err := c.store.Commit(context.Background(), records)
		if c.observe != nil {
			c.observe(len(records), time.Since(start), err)
		}
		for _, w := range batch {
			w.done <- err
		}
	}
}
