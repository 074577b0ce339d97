package msg

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/outbox"
)

// inboxConsumer is an HTTP consumer that applies each delivery through
// participant.Inbox keyed by Concord-Gid, in its own SQLite database.
type inboxConsumer struct {
	db    *sql.DB
	inbox *participant.Inbox
	srv   *httptest.Server

	mu      sync.Mutex
	raw     map[string]int // deliveries per gid, duplicates included
	applied []string       // payloads in the order they were applied
}

func newInboxConsumer(t *testing.T) *inboxConsumer {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "consumer.db")+
		"?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &inboxConsumer{db: db, raw: map[string]int{}}
	if c.inbox, err = participant.NewInbox(db, participant.SQLite); err != nil {
		t.Fatal(err)
	}
	if err := c.inbox.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE events (gid TEXT NOT NULL, body TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	c.srv = httptest.NewServer(participant.Handler(func(ctx context.Context, b participant.Branch, body []byte) error {
		c.mu.Lock()
		c.raw[b.GID]++
		c.mu.Unlock()
		_, err := c.inbox.Handle(ctx, b.GID, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO events (gid, body) VALUES (?, ?)", b.GID, string(body)); err != nil {
				return err
			}
			c.mu.Lock()
			c.applied = append(c.applied, string(body))
			c.mu.Unlock()
			return nil
		})
		return err
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// appliedCount returns how many times the consumer's database applied gid.
func (c *inboxConsumer) appliedCount(t *testing.T, gid string) (n int) {
	if err := c.db.QueryRowContext(t.Context(), "SELECT count(*) FROM events WHERE gid = ?", gid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// dyingSink is a relay that dies at a chosen point: after the inner sink
// took the first `after` messages of the batch numbered `batch`, it
// cancels the relay's context, before the relay recorded anything. With
// after = len(batch) the coordinator accepted the whole batch.
type dyingSink struct {
	inner  outbox.Sink
	batch  int
	after  int
	cancel context.CancelFunc

	mu    sync.Mutex
	calls int
}

func (s *dyingSink) Send(ctx context.Context, msgs []outbox.Message) error {
	s.mu.Lock()
	s.calls++
	die := s.calls == s.batch
	s.mu.Unlock()
	if !die {
		return s.inner.Send(ctx, msgs)
	}
	err := s.inner.Send(ctx, msgs[:min(s.after, len(msgs))])
	s.cancel()
	if err != nil {
		return err
	}
	return ctx.Err()
}

// TestOutboxRelayToCoordinator writes messages to an outbox (SQLite, and
// PostgreSQL with several relays' lease), relays them to the real
// coordinator with outbox.CoordinatorSink, and kills the relay twice: once
// after the coordinator accepted a whole batch and before the relay
// deleted its rows, once in the middle of a batch. A third relay sends
// what is left, the interrupted rows again under the same gids. Every row
// reaches the HTTP consumer, which applies it exactly once through
// participant.Inbox; the coordinator took every resend as the message it
// already had, so no message is delivered twice either.
func TestOutboxRelayToCoordinator(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	for _, tc := range []struct {
		name    string
		dialect participant.Dialect
		open    func(t *testing.T) *sql.DB
		wait    bool
	}{
		{"sqlite", participant.SQLite, func(t *testing.T) *sql.DB {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "outbox.db")+
				"?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)&_txlock=immediate")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}, false},
		{"postgres-wait-delivered", participant.Postgres, func(t *testing.T) *sql.DB { return testenv.Postgres(t) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.open(t)
			table := testenv.UniqueName(t, "e2eob")
			ob, err := outbox.New(tc.dialect, outbox.WithTable(table))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table)
				db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table+"_relay")
			})
			if err := ob.Migrate(t.Context(), db); err != nil {
				t.Fatal(err)
			}
			cons := newInboxConsumer(t)
			const n, keys = 120, 6
			ids := make([]string, n)
			for i := 0; i < n; i += 10 {
				tx, err := db.BeginTx(t.Context(), nil)
				if err != nil {
					t.Fatal(err)
				}
				for j := i; j < i+10; j++ {
					key := "k" + strconv.Itoa(j%keys)
					ids[j] = fmt.Sprintf("%s-order-%d", tc.name, j)
					if _, err := ob.Write(t.Context(), tx, outbox.Message{ID: ids[j], Key: key, Payload: []byte(key + "/" + strconv.Itoa(j))}); err != nil {
						t.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			ns := testenv.UniqueName(t, "svc")
			sink, err := outbox.CoordinatorSink(c, outbox.CoordinatorConfig{Namespace: ns, Destinations: []string{cons.srv.URL},
				Options: client.Options{RetryInitial: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond}, WaitDelivered: tc.wait})
			if err != nil {
				t.Fatal(err)
			}
			cfg := outbox.RelayConfig{BatchSize: 16, PollInterval: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
			pending := func() (k int) {
				if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM "+table).Scan(&k); err != nil {
					t.Fatal(err)
				}
				return k
			}

			// Relay 1 dies after the coordinator accepted its second batch.
			ctx, cancel := context.WithCancel(t.Context())
			err = ob.NewRelay(db, &dyingSink{inner: sink, batch: 2, after: cfg.BatchSize, cancel: cancel}, cfg).Run(ctx)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("relay 1: %v", err)
			}
			if left := pending(); left != n-cfg.BatchSize {
				t.Fatalf("%d rows left after relay 1, want %d: only its first batch was recorded", left, n-cfg.BatchSize)
			}
			// Relay 2 dies in the middle of its second batch.
			ctx, cancel = context.WithCancel(t.Context())
			err = ob.NewRelay(db, &dyingSink{inner: sink, batch: 2, after: 5, cancel: cancel}, cfg).Run(ctx)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("relay 2: %v", err)
			}
			if left := pending(); left != n-2*cfg.BatchSize {
				t.Fatalf("%d rows left after relay 2, want %d", left, n-2*cfg.BatchSize)
			}
			// Relay 3 lives.
			ctx, cancel = context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- ob.NewRelay(db, sink, cfg).Run(ctx) }()
			testenv.Eventually(t, 30*time.Second, "the outbox drained", func() bool { return pending() == 0 })
			cancel()
			<-done

			wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer wcancel()
			redelivered := 0
			for _, id := range ids {
				gid := outbox.MessageGID(ns, id)
				tx, err := c.Wait(wctx, gid)
				if err != nil {
					t.Fatalf("wait %s: %v", gid, err)
				}
				want(t, tx, "succeeded")
				if k := cons.appliedCount(t, gid); k != 1 {
					t.Errorf("%s applied %d times by the consumer, want 1", gid, k)
				}
				cons.mu.Lock()
				if cons.raw[gid] > 1 {
					redelivered++
				}
				cons.mu.Unlock()
			}
			t.Logf("%d messages, %d of them delivered more than once on the wire", n, redelivered)
			var events int
			if err := cons.db.QueryRowContext(t.Context(), "SELECT count(*) FROM events").Scan(&events); err != nil {
				t.Fatal(err)
			}
			if events != n {
				t.Errorf("the consumer applied %d messages, want %d: a resend became a new message", events, n)
			}

			if tc.wait { // WaitDelivered: each key applied in outbox order
				last := map[string]int{}
				cons.mu.Lock()
				for _, body := range cons.applied {
					key, idx, _ := strings.Cut(body, "/")
					i, _ := strconv.Atoi(idx)
					if prev, ok := last[key]; ok && i < prev {
						t.Errorf("key %s: message %d applied after %d", key, i, prev)
					}
					last[key] = i
				}
				cons.mu.Unlock()
			}
		})
	}
}
