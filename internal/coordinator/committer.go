package coordinator

import (
	"context"
	"errors"
	"fmt"
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
	var carry []*write // versioned writes held for the next batch
	index := make(map[string]int, c.maxBatch)
	records := make([]store.Record, 0, c.maxBatch)
	writers := make([][]*write, 0, c.maxBatch)
	open := true
	for open || len(carry) > 0 {
		batch = append(batch[:0], carry...)
		carry = carry[:0]
		if len(batch) == 0 {
			w, ok := <-c.in
			if !ok {
				return
			}
			batch = append(batch, w)
		}
	drain:
		for open && len(batch) < c.maxBatch {
			select {
			case w, ok := <-c.in:
				if !ok {
					open = false
					break drain
				}
				batch = append(batch, w)
			default:
				break drain
			}
		}
		records = records[:0]
		writers = writers[:0]
		clear(index)
		for _, w := range batch {
			if i, ok := index[w.rec.GID]; ok {
				if w.rec.Version > 0 {
					// A fenced write expects the version the earlier one
					// writes: it goes in the next batch, in order.
					carry = append(carry, w)
					continue
				}
				records[i] = w.rec
				writers[i] = append(writers[i], w)
				continue
			}
			index[w.rec.GID] = len(records)
			records = append(records, w.rec)
			writers = append(writers, []*write{w})
		}
		failpoint.Hit(failpoint.BeforeCommitSync)
		c.commitBatch(records, writers)
	}
}

// commitBatch writes records and tells their writers. When the store
// reports version conflicts, the conflicting records fail (their
// transactions moved to another instance) and the rest is written again.
func (c *committer) commitBatch(records []store.Record, writers [][]*write) {
	for {
		start := time.Now()
		err := c.store.Commit(context.Background(), records)
		if c.observe != nil {
			c.observe(len(records), time.Since(start), err)
		}
		var ce *store.ConflictError
		if err == nil || !errors.As(err, &ce) || len(ce.GIDs) == 0 {
			for _, ws := range writers {
				for _, w := range ws {
					w.done <- err
				}
			}
			return
		}
		lost := make(map[string]bool, len(ce.GIDs))
		for _, g := range ce.GIDs {
			lost[g] = true
		}
		keptR, keptW := records[:0], writers[:0]
		for i, r := range records {
			if lost[r.GID] {
				for _, w := range writers[i] {
					w.done <- fmt.Errorf("%w: %s", store.ErrConflict, r.GID)
				}
				continue
			}
			keptR, keptW = append(keptR, r), append(keptW, writers[i])
		}
		if len(keptR) == len(records) {
			// The store named no record of this batch: fail them all
			// rather than loop.
			for _, ws := range writers {
				for _, w := range ws {
					w.done <- err
				}
			}
			return
		}
		records, writers = keptR, keptW
		if len(records) == 0 {
			return
		}
	}
}
