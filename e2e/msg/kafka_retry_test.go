package msg

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	_ "modernc.org/sqlite"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/broker"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/daemon"
	"github.com/concordtm/concord/internal/testenv/proc"
	"github.com/concordtm/concord/participant"
)

// kafkaRecord is one record as a consumer reads it.
type kafkaRecord struct{ id, gid, body string }

func readKafka(t *testing.T, addrs []string, topic string, want int) []kafkaRecord {
	t.Helper()
	kc, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got []kafkaRecord
	for len(got) < want {
		fs := kc.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s", len(got), want, topic)
		}
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var rec kafkaRecord
			for _, h := range r.Headers {
				switch h.Key {
				case broker.HeaderID:
					rec.id = string(h.Value)
				case participant.HeaderGID:
					rec.gid = string(h.Value)
				}
			}
			rec.body = string(r.Value)
			got = append(got, rec)
		})
	}
	return got
}

// What a consumer sees when Kafka appended a delivery whose confirmation
// never reached the coordinator:
//
//   - while the coordinator lives, nothing extra: every produce response is
//     lost for a while, franz-go's idempotent producer keeps retrying the
//     same batch (it may not give up on a request it sent: the broker may
//     have it), and Kafka recognizes each retry; the topic holds the record
//     once;
//   - the coordinator is killed in that state and restarted: the delivery
//     was never recorded as acknowledged, so the new process delivers again,
//     with a new producer id, and Kafka appends a second record. Both carry
//     the same Concord-Msg-Id (gid/branch); a consumer that handles records
//     through participant.Inbox keyed by that header applies it once.
//
// This is the promise for Kafka: at least once in the topic, exactly once
// after the consumer's inbox.
func TestKafkaCoordinatorRetryAfterAppend(t *testing.T) {
	k := daemon.NewKafka(t, 1, "orders")
	dir := t.TempDir()
	srv := proc.Start(t, dir, nil)
	c := client.New(srv.URL)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// Open the coordinator's publisher with a first message, untouched.
	opts := client.Options{BranchTimeout: 300 * time.Millisecond, RetryInitial: 100 * time.Millisecond, RetryMax: 300 * time.Millisecond, MaxAttempts: 100}
	url := "kafka://" + k.Addrs + "?topic=orders"
	first, err := c.NewMessage("").Payload("warm-up").ToBranch("kafka", url, nil).WithOptions(opts).SendAndWait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want(t, first, "succeeded")

	k.DropProduceResponsesFor(time.Minute)
	m := c.NewMessage("").Payload("order 42 created").ToBranch("kafka", url, nil).WithOptions(opts)
	if _, err := m.Send(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait for the append and at least one of franz-go's retries of it.
	testenv.Eventually(t, 30*time.Second, "the append and a retry of it", func() bool {
		produces, _ := k.Stats()
		return produces >= 3
	})
	if n := k.Records(t, "orders"); n != 2 {
		t.Fatalf("after lost responses the topic holds %d records, want 2 (warm-up, and the message once)", n)
	}
	if tx, err := c.Get(ctx, m.GID()); err != nil || tx.Status == "succeeded" {
		t.Fatalf("%s is %s (%v) without a confirmation from Kafka", m.GID(), tx.GetStatus(), err)
	}
	srv.Kill()
	k.DropProduceResponsesFor(0)
	srv = restartOn(t, dir, strings.TrimPrefix(srv.URL, "http://"))
	c = client.New(srv.URL)
	want(t, settle(t, c, m.GID()), "succeeded")
	produces, dropped := k.Stats()
	t.Logf("produce requests %d, responses lost %d", produces, dropped)

	id := m.GID() + "/kafka"
	recs := readKafka(t, k.ListenAddrs(), "orders", int(k.Records(t, "orders")))
	if copies := countID(recs, id); copies != 2 {
		t.Errorf("the topic holds %d copies of %s, want 2 (one per coordinator process)", copies, id)
	}

	// The consumer: participant.Inbox keyed by Concord-Msg-Id.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "consumer.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	inbox, err := participant.NewInbox(db, participant.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := inbox.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE orders (gid TEXT NOT NULL, body TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := inbox.Handle(t.Context(), r.id, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO orders (gid, body) VALUES (?, ?)", r.gid, r.body)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var applied int
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM orders WHERE gid = ?", m.GID()).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Errorf("the consumer applied %s %d times, want 1", m.GID(), applied)
	}
}

func countID(recs []kafkaRecord, id string) (n int) {
	for _, r := range recs {
		if r.id == id {
			n++
		}
	}
	return n
}
