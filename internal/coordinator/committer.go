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
//
// With a store that can split a commit (store.AsyncCommitter), the commit
// is also pipelined: the loop applies a batch and hands its wait for
// durability to the notifier, then goes on with the next batch while the
// first one's fsync runs. The notifier tells writers in batch order, each
// only once its batch is durable. At most pipelineDepth batches wait for
// the notifier, and the loop may hold one more, applied, until there is
// room.
type committer struct {
	store    store.Store
	async    store.AsyncCommitter // nil: Commit, one batch at a time
	in       chan *write
	maxBatch int
	observe  func(records int, d time.Duration, err error)
	pipe     chan inFlight // to the notifier, with async
	done     chan struct{}
}

// pipelineDepth bounds the batches handed to the notifier and not yet
// known durable.
const pipelineDepth = 4

// inFlight is a batch applied and waiting for its fsync.
type inFlight struct {
	wait    func() error
	records int
	start   time.Time
	writers [][]*write
}

type write struct {
	rec  store.Record
	done chan error
}

func newCommitter(s store.Store, maxBatch int, observe func(int, time.Duration, error)) *committer {
	c := &committer{store: s, in: make(chan *write, 4*maxBatch), maxBatch: maxBatch, observe: observe, done: make(chan struct{})}
	if a, ok := s.(store.AsyncCommitter); ok {
		c.async = a
		c.pipe = make(chan inFlight, pipelineDepth-1)
	}
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
	if c.async != nil {
		notified := make(chan struct{})
		go c.notify(notified)
		defer func() {
			close(c.pipe)
			<-notified
			close(c.done)
		}()
	} else {
		defer close(c.done)
	}
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

// notify tells the writers of each batch in flight, in order, once its
// wait returns.
func (c *committer) notify(done chan<- struct{}) {
	defer close(done)
	for f := range c.pipe {
		c.finish(f)
	}
}

// finish waits for f's batch to be durable and tells its writers.
func (c *committer) finish(f inFlight) {
	err := f.wait()
	if c.observe != nil {
		c.observe(f.records, time.Since(f.start), err)
	}
	tell(f.writers, err)
}

func tell(writers [][]*write, err error) {
	for _, ws := range writers {
		for _, w := range ws {
			w.done <- err
		}
	}
}

// commitBatch writes records and tells their writers (with async, hands
// them to the notifier, which tells them once the batch is durable). When
// the store reports version conflicts, the conflicting records fail (their
// transactions moved to another instance) and the rest is written again.
func (c *committer) commitBatch(records []store.Record, writers [][]*write) {
	for {
		start := time.Now()
		var wait func() error
		var err error
		if c.async != nil {
			wait, err = c.async.CommitAsync(context.Background(), records)
		} else {
			err = c.store.Commit(context.Background(), records)
		}
		var ce *store.ConflictError
		if err == nil || !errors.As(err, &ce) || len(ce.GIDs) == 0 {
			if err != nil || wait == nil {
				wait = func() error { return err }
			}
			f := inFlight{wait: wait, records: len(records), start: start, writers: writers}
			if c.async != nil {
				// writers is reused by the loop: the notifier gets a copy.
				f.writers = append([][]*write(nil), writers...)
				c.pipe <- f
				return
			}
			c.finish(f)
			return
		}
		if c.observe != nil {
			c.observe(len(records), time.Since(start), err)
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
			tell(writers, err)
			return
		}
		records, writers = keptR, keptW
		if len(records) == 0 {
			return
		}
	}
}
