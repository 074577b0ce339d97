package broker

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsFixture is a JetStream stream unique to the test, deleted afterwards,
// capturing one subject, with a one-minute duplicate window.
type natsFixture struct {
	url, stream, subject string
	js                   jetstream.JetStream
}

func newNATS(t testing.TB) *natsFixture {
	t.Helper()
	u := testenv.NATSURL(t)
	nc, err := nats.Connect(u)
	if err != nil {
		testenv.Require(t, "NATS", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := testenv.UniqueName(t, "cs")
	f := &natsFixture{url: u, stream: name, subject: "concord.test." + name, js: js}
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: name, Subjects: []string{f.subject}, Storage: jetstream.FileStorage, Duplicates: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.DeleteStream(context.Background(), name) })
	return f
}

func (f *natsFixture) dest(t testing.TB, stream bool) string {
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"subject": {f.subject}}
	if stream {
		q.Set("stream", f.stream)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// consume reads the whole stream in order.
func (f *natsFixture) consume(t testing.TB) []received {
	t.Helper()
	s, err := f.js.Stream(t.Context(), f.stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []received
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get("X-Test") != "yes" {
			t.Errorf("message %d: headers %v", seq, m.Header)
		}
		got = append(got, received{m.Header.Get(jetstream.MsgIDHeader), m.Header.Get(HeaderKey)})
	}
	return got
}

func TestNATSPublishDedup(t *testing.T) {
	f := newNATS(t)
	p := openTest(t, f.dest(t, true), nil)
	msgs := testMessages("m", 300, 7)
	publishAll(t, p, msgs)
	// Every message again: JetStream drops them within the duplicate window.
	publishAll(t, p, msgs)
	got := f.consume(t)
	if dups := checkDelivery(t, msgs, got); dups != 0 || len(got) != len(msgs) {
		t.Errorf("stream holds %d messages (%d duplicates), want %d", len(got), dups, len(msgs))
	}
}

func TestNATSMissingStream(t *testing.T) {
	u := testenv.NATSURL(t)
	_, err := Open(t.Context(), mustParse(t, u+"?subject=concord.none&stream="+testenv.UniqueName(t, "missing")))
	if !IsPermanent(err) {
		t.Fatalf("Open with a missing stream = %v, want a permanent error", err)
	}
}

func TestNATSSubjectWithoutStream(t *testing.T) {
	u := testenv.NATSURL(t)
	p := openTest(t, u+"?subject=concord.nostream."+testenv.UniqueName(t, "s"), nil)
	for _, publish := range []func() error{
		func() error { return p.Publish(t.Context(), Message{ID: "x"}) },
		func() error { return p.PublishBatch(t.Context(), []Message{{ID: "y"}}) },
	} {
		if err := publish(); !IsPermanent(err) {
			t.Fatalf("publish to a subject no stream captures = %v, want a permanent error", err)
		}
	}
}

func TestNATSTooLarge(t *testing.T) {
	f := newNATS(t)
	p := openTest(t, f.dest(t, false), nil)
	err := p.Publish(t.Context(), Message{ID: "big", Payload: make([]byte, 64<<20)})
	if !IsPermanent(err) || !strings.Contains(err.Error(), "payload") {
		t.Fatalf("oversized publish = %v, want a permanent error", err)
	}
}

func TestNATSReconnect(t *testing.T) {
	f := newNATS(t)
	var c cutter
	p := openTest(t, f.dest(t, true), c.dial)
	msgs := testMessages("r", 20, 2)
	for i, m := range msgs {
		if i%5 == 4 {
			c.cut()
		}
		publishEventually(t, p, m)
	}
	checkDelivery(t, msgs, f.consume(t))
}
