package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/concordtm/concord/internal/broker"
)

// A Sink receives relayed messages.
type Sink interface {
	// Send delivers msgs, which are in sequence order, and returns nil only
	// when every one of them was confirmed. Messages of one key must reach
	// the destination in slice order. On error, any subset may have been
	// delivered; the relay sends the unconfirmed ones again. An error for
	// which the relay's IsPermanent reports true parks the message instead.
	Send(ctx context.Context, msgs []Message) error
}

// RelayConfig tunes a Relay. The zero value is usable.
type RelayConfig struct {
	// BatchSize is the most rows read and sent at once (default 100).
	BatchSize int
	// PollInterval is how long the relay sleeps when the outbox is empty or
	// every pending row is backing off (default 100ms). Call Relay.Notify
	// after committing messages to wake it sooner.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed key, or a
	// failing sink, is tried again; it doubles per failure (defaults 100ms
	// and 30s).
	MinBackoff, MaxBackoff time.Duration
	// IsPermanent classifies sink errors (default broker.IsPermanent).
	IsPermanent func(error) bool
	// Logger receives failures (default: discarded).
	Logger *slog.Logger
}

// A Relay moves committed outbox rows to a Sink. Run it in one goroutine;
// Notify may be called from any.
type Relay struct {
	o    *Outbox
	db   *sql.DB
	sink Sink
	cfg  RelayConfig
	wake chan struct{}

	// backoff by key ("k"+key) or, for rows without a key, by row ("s"+seq);
	// the sink as a whole under "".
	backoff map[string]*retryState
}

type retryState struct {
	failures int
	until    time.Time
}

// maxExcluded bounds the keys and rows in backoff that a poll excludes in
// SQL; beyond it, the rest are filtered after reading.
const maxExcluded = 200

// NewRelay returns a relay from o's table in db to sink.
func (o *Outbox) NewRelay(db *sql.DB, sink Sink, cfg RelayConfig) *Relay {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.IsPermanent == nil {
		cfg.IsPermanent = broker.IsPermanent
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{o: o, db: db, sink: sink, cfg: cfg, wake: make(chan struct{}, 1), backoff: map[string]*retryState{}}
}

// Notify wakes the relay if it is waiting for new rows.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends and returns ctx's error. Database errors are
// logged and retried after a backoff.
func (r *Relay) Run(ctx context.Context) error {
	for {
		n, err := r.RunOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := time.Duration(0)
		switch {
		case err != nil:
			r.cfg.Logger.Warn("outbox relay: batch failed", "table", r.o.table, "err", err)
			wait = r.fail("")
		case n == 0:
			wait = r.cfg.PollInterval
			if s := r.backoff[""]; s != nil {
				wait = max(wait, time.Until(s.until))
			}
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-r.wake:
				t.Stop()
			case <-t.C:
			}
		}
	}
}

// RunOnce relays one batch and returns how many rows it settled (delivered
// or parked). An error means the batch was rolled back: its rows stay
// pending and may have been delivered (they will be sent again).
func (r *Relay) RunOnce(ctx context.Context) (settled int, err error) {
	now := time.Now()
	if s := r.backoff[""]; s != nil && now.Before(s.until) {
		return 0, nil // the sink as a whole is backing off
	}
	var tx *sql.Tx
	reader := queryer(r.db)
	if r.o.q.lock != "" {
		if tx, err = r.db.BeginTx(ctx, nil); err != nil {
			return 0, fmt.Errorf("outbox: relay begin: %w", err)
		}
		defer func() {
			if tx != nil {
				_ = tx.Rollback()
			}
		}()
		var id int
		if err := tx.QueryRowContext(ctx, r.o.q.lock).Scan(&id); err != nil {
			return 0, fmt.Errorf("outbox: relay lease %s_relay: %w", r.o.table, err)
		}
		reader = tx
	}
	rows, err := r.pending(ctx, reader, now)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	res := r.send(ctx, rows, now)
	if ctx.Err() != nil {
		return 0, ctx.Err() // roll back: the batch is sent again after a restart
	}
	if tx == nil { // SQLite: write the outcome in a short transaction
		if tx, err = r.db.BeginTx(ctx, nil); err != nil {
			return 0, fmt.Errorf("outbox: relay begin: %w", err)
		}
		defer func() {
			if tx != nil {
				_ = tx.Rollback()
			}
		}()
	}
	if len(res.delivered) > 0 {
		args := make([]any, len(res.delivered))
		for i, seq := range res.delivered {
			args[i] = seq
		}
		if _, err := tx.ExecContext(ctx, r.o.q.deleteQuery(len(args)), args...); err != nil {
			return 0, fmt.Errorf("outbox: relay mark delivered: %w", err)
		}
	}
	for _, f := range res.failed {
		status := statusPending
		if f.permanent {
			status = statusFailed
		}
		msg := f.err.Error()
		if len(msg) > r.o.q.maxError {
			msg = msg[:r.o.q.maxError]
		}
		if _, err := tx.ExecContext(ctx, r.o.q.failQuery(), status, msg, f.seq); err != nil {
			return 0, fmt.Errorf("outbox: relay record failure: %w", err)
		}
	}
	err = tx.Commit()
	tx = nil
	if err != nil {
		return 0, fmt.Errorf("outbox: relay commit: %w", err)
	}
	return len(res.delivered) + res.parked, nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// pending reads the next rows to send, leaving out what is backing off.
func (r *Relay) pending(ctx context.Context, q queryer, now time.Time) ([]Message, error) {
	var keys, seqs []any
	for k, s := range r.backoff {
		if k == "" || !now.Before(s.until) {
			continue
		}
		if k[0] == 'k' && len(keys) < maxExcluded {
			keys = append(keys, k[1:])
		}
		if k[0] == 's' && len(seqs) < maxExcluded {
			var seq int64
			fmt.Sscan(k[1:], &seq)
			seqs = append(seqs, seq)
		}
	}
	args := append(append(keys, seqs...), r.cfg.BatchSize)
	rows, err := q.QueryContext(ctx, r.o.q.pendingQuery(len(keys), len(seqs)), args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: relay read: %w", err)
	}
	defer rows.Close()
	var msgs []Message
	for rows.Next() {
		var m Message
		var headers string
		if err := rows.Scan(&m.Seq, &m.Destination, &m.ID, &m.Key, &m.Payload, &headers); err != nil {
			return nil, fmt.Errorf("outbox: relay read: %w", err)
		}
		if headers != "" {
			if err := json.Unmarshal([]byte(headers), &m.Headers); err != nil {
				return nil, fmt.Errorf("outbox: relay read row %d headers: %w", m.Seq, err)
			}
		}
		if s := r.backoff[backoffKey(m)]; s != nil && now.Before(s.until) {
			continue
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: relay read: %w", err)
	}
	return msgs, nil
}

func backoffKey(m Message) string {
	if m.Key == "" {
		return fmt.Sprintf("s%d", m.Seq)
	}
	return "k" + m.Key
}

type sendResult struct {
	delivered []int64
	failed    []failure
	parked    int
}

type failure struct {
	seq       int64
	permanent bool
	err       error
}

// send hands rows to the sink: all at once, and, if that fails, one by one
// in order, so that a bad message holds up only its own key. If the very
// first single message fails retryably, the sink itself is taken to be
// down: the relay backs off as a whole (and that key too) and sends
// nothing more this round.
func (r *Relay) send(ctx context.Context, rows []Message, now time.Time) sendResult {
	var res sendResult
	err := r.sink.Send(ctx, rows)
	if err == nil {
		for _, m := range rows {
			res.delivered = append(res.delivered, m.Seq)
			delete(r.backoff, backoffKey(m))
		}
		delete(r.backoff, "")
		return res
	}
	if ctx.Err() != nil {
		return res
	}
	blocked := map[string]bool{}
	for i, m := range rows {
		bk := backoffKey(m)
		if blocked[bk] {
			continue
		}
		if len(rows) > 1 || i > 0 {
			err = r.sink.Send(ctx, rows[i:i+1])
		}
		if ctx.Err() != nil {
			return res
		}
		switch {
		case err == nil:
			res.delivered = append(res.delivered, m.Seq)
			delete(r.backoff, bk)
		case r.cfg.IsPermanent(err):
			r.cfg.Logger.Error("outbox relay: message parked", "table", r.o.table, "seq", m.Seq, "id", m.ID, "key", m.Key, "err", err)
			res.failed = append(res.failed, failure{m.Seq, true, err})
			res.parked++
			blocked[bk] = true
		default:
			r.cfg.Logger.Warn("outbox relay: send failed, will retry", "table", r.o.table, "seq", m.Seq, "id", m.ID, "key", m.Key, "err", err)
			res.failed = append(res.failed, failure{m.Seq, false, err})
			blocked[bk] = true
			r.fail(bk)
			if i == 0 {
				// The sink looks down: back off as a whole. The key backs
				// off too, so that if only this message is the problem, the
				// next round starts with other keys and the sink recovers.
				r.fail("")
				return res
			}
		}
	}
	delete(r.backoff, "")
	return res
}

// fail records a failure of key (see Relay.backoff) and returns the wait.
func (r *Relay) fail(key string) time.Duration {
	s := r.backoff[key]
	if s == nil {
		s = &retryState{}
		r.backoff[key] = s
	}
	wait := r.cfg.MinBackoff << min(s.failures, 20)
	if wait > r.cfg.MaxBackoff || wait <= 0 {
		wait = r.cfg.MaxBackoff
	}
	s.failures++
	s.until = time.Now().Add(wait)
	return wait
}

// PublisherSink sends every message to one broker publisher, whatever its
// Destination, as one batch when the publisher supports it.
func PublisherSink(p broker.Publisher) Sink { return publisherSink{p} }

type publisherSink struct{ p broker.Publisher }

func (s publisherSink) Send(ctx context.Context, msgs []Message) error {
	bm := make([]broker.Message, len(msgs))
	for i, m := range msgs {
		bm[i] = broker.Message{ID: m.ID, Key: m.Key, Payload: m.Payload, Headers: m.Headers}
	}
	if bp, ok := s.p.(broker.BatchPublisher); ok {
		return bp.PublishBatch(ctx, bm)
	}
	for _, m := range bm {
		if err := s.p.Publish(ctx, m); err != nil {
			return err
		}
	}
	return nil
}
