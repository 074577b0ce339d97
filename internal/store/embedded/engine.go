package embedded

// engine is the ordered key-value store under Store: bbolt or Pebble. Keys
// and values passed to fn callbacks are valid only until the callback
// returns.
type engine interface {
	// view runs fn against a consistent snapshot.
	view(fn func(r reader) error) error
	// update runs fn, then writes everything fn wrote as one atomic write
	// and fsyncs it before returning. If fn fails nothing is written.
	// Updates run one at a time; fn's reads see the state left by the
	// previous update.
	update(fn func(r reader, w writer) error) error
	// updateAsync is update split in two: it returns once the write is
	// applied, so that later updates and views see it, and hands back a
	// function that waits until the write is durable. Writes become durable
	// in the order they were applied. The caller must call wait exactly
	// once. An engine that cannot split the fsync off does it before it
	// returns and hands back a wait that returns nil.
	updateAsync(fn func(r reader, w writer) error) (wait func() error, err error)
	close() error
}

type reader interface {
	// get returns the value of key, or nil when it is absent.
	get(key []byte) ([]byte, error)
	// scan calls fn for every key in [lo, hi), in descending order when
	// reverse is set, until fn returns false. A nil hi means no upper
	// bound.
	scan(lo, hi []byte, reverse bool, fn func(k, v []byte) (bool, error)) error
}

type writer interface {
	set(key, value []byte) error
	del(key []byte) error
}

// noWait is the wait of a write that is already durable.
func noWait() error { return nil }
