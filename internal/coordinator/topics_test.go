package coordinator

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/msg"
	"github.com/concordtm/concord/internal/store/memstore"
	"github.com/concordtm/concord/internal/topic"
)

func subscribe(t *testing.T, c *Coordinator, topicName, subscriber, url string) {
	t.Helper()
	if _, _, _, err := c.Subscribe(t.Context(), topic.Subscription{Topic: topicName, Subscriber: subscriber, URL: url}); err != nil {
		t.Fatalf("Subscribe(%s, %s): %v", topicName, subscriber, err)
	}
}

func branchIDs(tx protocol.Txn) []string {
	var ids []string
	for _, b := range tx.Branches {
		ids = append(ids, b.ID)
	}
	return ids
}

// TestTopicFansOutPerSubscriber: each subscriber is a destination of its
// own, retried on its own; the others are delivered once.
func TestTopicFansOutPerSubscriber(t *testing.T) {
	var failures atomic.Int32
	c, caller := newTestCoordinator(t, memstore.New(), func(gid string, call protocol.Call) protocol.Outcome {
		if call.Branch == "orders:billing" && failures.Add(1) <= 2 {
			return protocol.OutcomeUnknown
		}
		return protocol.OutcomeSuccess
	})
	subscribe(t, c, "orders", "billing", "http://billing/in")
	subscribe(t, c, "orders", "stock", "http://stock/in")
	subscribe(t, c, "other", "x", "http://x/in")
	_, err := c.SendMessage(t.Context(), MessageSpec{
		GID: "m1", Topics: []string{"orders"}, Payload: []byte("hello"),
		Destinations: []protocol.Branch{{ID: "audit", ForwardURL: "http://audit/in", Payload: []byte("own")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tx := waitFinal(t, c, "m1")
	if tx.Status != protocol.StatusSucceeded {
		t.Fatalf("status %s", tx.Status)
	}
	if got, want := branchIDs(tx), []string{"audit", "orders:billing", "orders:stock"}; !slices.Equal(got, want) {
		t.Fatalf("destinations %q, want %q", got, want)
	}
	for _, b := range tx.Branches {
		want := map[string]int{"audit": 1, "orders:billing": 3, "orders:stock": 1}[b.ID]
		if b.Fwd.Status != protocol.OpDone || b.Fwd.Attempts != want {
			t.Errorf("%s: %s after %d attempts, want done after %d", b.ID, b.Fwd.Status, b.Fwd.Attempts, want)
		}
		if wantURL := map[string]string{"audit": "http://audit/in", "orders:billing": "http://billing/in", "orders:stock": "http://stock/in"}[b.ID]; b.ForwardURL != wantURL {
			t.Errorf("%s: url %s, want %s", b.ID, b.ForwardURL, wantURL)
		}
		if wantBody := map[bool]string{true: "own", false: "hello"}[b.ID == "audit"]; string(b.Payload) != wantBody {
			t.Errorf("%s: payload %q, want %q", b.ID, b.Payload, wantBody)
		}
	}
	if n := caller.count("/orders:stock/deliver"); n != 1 {
		t.Errorf("orders:stock delivered %d times, want 1", n)
	}
	if n := caller.count("/other:x/deliver"); n != 0 {
		t.Errorf("a subscriber of another topic got %d deliveries", n)
	}
}

// TestTopicSnapshot: the subscriptions at Prepare are the destinations;
// changes before Submit do not alter the message, and a retry of the same
// submission is still recognised.
func TestTopicSnapshot(t *testing.T) {
	c, caller := newTestCoordinator(t, memstore.New(), nil)
	subscribe(t, c, "orders", "a", "http://a/in")
	subscribe(t, c, "orders", "b", "http://b/in")
	spec := MessageSpec{GID: "m2", Topics: []string{"orders"}, Payload: []byte("p"), CheckURL: "http://producer/check"}
	if _, err := c.PrepareMessage(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if err := c.Unsubscribe(t.Context(), "orders", "a"); err != nil {
		t.Fatal(err)
	}
	subscribe(t, c, "orders", "c", "http://c/in")
	subscribe(t, c, "orders", "b", "http://b2/in")
	again, err := c.PrepareMessage(t.Context(), spec)
	if err != nil {
		t.Fatalf("repeating the prepare after the subscriptions changed: %v", err)
	}
	if got, want := branchIDs(again), []string{msg.CheckBranch, "orders:a", "orders:b"}; !slices.Equal(got, want) {
		t.Fatalf("repeated prepare returned %q, want %q", got, want)
	}
	if err := c.Unsubscribe(t.Context(), "orders", "b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Unsubscribe(t.Context(), "orders", "c"); err != nil {
		t.Fatal(err)
	}
	if again, err := c.PrepareMessage(t.Context(), spec); err != nil || !slices.Equal(branchIDs(again), []string{msg.CheckBranch, "orders:a", "orders:b"}) {
		t.Fatalf("repeating the prepare after the topic lost every subscriber: %q, %v", branchIDs(again), err)
	}
	if _, err := c.SubmitMessage(t.Context(), "m2"); err != nil {
		t.Fatal(err)
	}
	tx := waitFinal(t, c, "m2")
	if got, want := branchIDs(tx), []string{msg.CheckBranch, "orders:a", "orders:b"}; !slices.Equal(got, want) {
		t.Fatalf("destinations %q, want %q", got, want)
	}
	if tx.Branches[2].ForwardURL != "http://b/in" {
		t.Errorf("orders:b went to %s, want the URL at prepare, http://b/in", tx.Branches[2].ForwardURL)
	}
	if n := caller.count("/orders:c/deliver"); n != 0 {
		t.Errorf("a subscriber added after the prepare got %d deliveries", n)
	}
}

// TestTopicRefusals: bad input is refused and creates nothing.
func TestTopicRefusals(t *testing.T) {
	c, _ := newTestCoordinator(t, memstore.New(), nil)
	subscribe(t, c, "orders", "a", "http://a/in")
	for _, tc := range []struct {
		name string
		spec MessageSpec
		want error
	}{
		{"no subscribers", MessageSpec{GID: "r1", Topics: []string{"empty"}}, topic.ErrNoSubscribers},
		{"one of two topics has none", MessageSpec{GID: "r2", Topics: []string{"orders", "empty"}}, topic.ErrNoSubscribers},
		{"bad topic name", MessageSpec{GID: "r3", Topics: []string{"bad/name"}}, topic.ErrInvalid},
		{"topic twice", MessageSpec{GID: "r4", Topics: []string{"orders", "orders"}}, topic.ErrInvalid},
		{"id clash", MessageSpec{GID: "r5", Topics: []string{"orders"}, Destinations: []protocol.Branch{{ID: "orders:a", ForwardURL: "http://z"}}}, ErrInvalid},
		{"too many", MessageSpec{GID: "r6", Topics: []string{"orders"}, MaxDestinations: 1, Destinations: []protocol.Branch{{ForwardURL: "http://z"}}}, ErrInvalid},
	} {
		_, err := c.SendMessage(t.Context(), tc.spec)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if _, err := c.Get(t.Context(), tc.spec.GID); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: the refused message exists: %v", tc.name, err)
		}
	}
	if err := c.Unsubscribe(t.Context(), "orders", "nobody"); !errors.Is(err, topic.ErrNotSubscribed) {
		t.Errorf("Unsubscribe of an unknown subscriber: %v", err)
	}
	if _, _, _, err := c.Subscribe(t.Context(), topic.Subscription{Topic: "orders", Subscriber: "a:b", URL: "http://x"}); !errors.Is(err, topic.ErrInvalid) {
		t.Errorf("Subscribe with a bad subscriber name: %v", err)
	}
	subs, err := c.Subscriptions(t.Context(), "")
	if err != nil || len(subs) != 1 || subs[0].URL != "http://a/in" {
		t.Fatalf("subscriptions after refused calls: %+v, %v", subs, err)
	}
}

func TestSubscribeIsIdempotent(t *testing.T) {
	c, _ := newTestCoordinator(t, memstore.New(), nil)
	sub := topic.Subscription{Topic: "t", Subscriber: "s", URL: "http://a"}
	check := func(wantCreated, wantChanged bool, url string) {
		t.Helper()
		sub.URL = url
		got, created, changed, err := c.Subscribe(t.Context(), sub)
		if err != nil || created != wantCreated || changed != wantChanged || got.URL != url {
			t.Fatalf("Subscribe(%s) = %+v created=%v changed=%v, %v; want created=%v changed=%v", url, got, created, changed, err, wantCreated, wantChanged)
		}
	}
	check(true, true, "http://a")
	check(false, false, "http://a")
	check(false, true, "http://b")
	subs, err := c.Subscriptions(t.Context(), "t")
	if err != nil || len(subs) != 1 || subs[0].URL != "http://b" {
		t.Fatalf("Subscriptions: %+v, %v", subs, err)
	}
}

// TestTopicsNeedStoreMeta: a store without store.Meta refuses topics
// clearly.
func TestTopicsNeedStoreMeta(t *testing.T) {
	c, _ := newTestCoordinator(t, &countingStore{Store: memstore.New()}, nil)
	if _, _, _, err := c.Subscribe(t.Context(), topic.Subscription{Topic: "t", Subscriber: "s", URL: "http://a"}); !errors.Is(err, topic.ErrUnsupported) {
		t.Fatalf("Subscribe: %v, want ErrUnsupported", err)
	}
	if _, err := c.SendMessage(t.Context(), MessageSpec{Topics: []string{"t"}}); !errors.Is(err, topic.ErrUnsupported) {
		t.Fatalf("SendMessage to a topic: %v, want ErrUnsupported", err)
	}
}
