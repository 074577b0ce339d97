package topic

import (
	"errors"
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/store/memstore"
)

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"orders", "Orders.v2", "a_b-c", strings.Repeat("t", MaxTopicLen)} {
		if err := CheckTopic(ok); err != nil {
			t.Errorf("CheckTopic(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a:b", "a b", "é", strings.Repeat("t", MaxTopicLen+1)} {
		if err := CheckTopic(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckTopic(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := CheckSubscriber(strings.Repeat("s", MaxSubscriberLen)); err != nil {
		t.Error(err)
	}
	if err := CheckSubscriber(strings.Repeat("s", MaxSubscriberLen+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("a long subscriber name: %v", err)
	}
	sub := Subscription{Topic: strings.Repeat("t", MaxTopicLen), Subscriber: strings.Repeat("s", MaxSubscriberLen)}
	if n := len(sub.DestinationID()); n > 128 {
		t.Errorf("the longest destination id is %d bytes, more than a branch id may be", n)
	}
}

func TestEncodeDecode(t *testing.T) {
	s := Subscription{Topic: "orders", Subscriber: "billing", URL: "nats://127.0.0.1:4222?subject=x", UpdatedAt: 42}
	got, err := Decode(Key(s.Topic, s.Subscriber), Encode(s))
	if err != nil || got != s {
		t.Fatalf("Decode(Encode(%+v)) = %+v, %v", s, got, err)
	}
	for _, key := range []string{"orders/billing", "topic/orders", "topic/or:ders/b", "topic//b"} {
		if _, err := Decode(key, Encode(s)); err == nil {
			t.Errorf("Decode accepted key %q", key)
		}
	}
	if _, err := Decode(Key("o", "b"), []byte("{")); err == nil {
		t.Error("Decode accepted a malformed value")
	}
}

// TestPrefixSeparatesTopics: a topic's prefix does not match a longer
// topic that starts with its name.
func TestPrefixSeparatesTopics(t *testing.T) {
	r := NewRegistry(memstore.New())
	for _, s := range []Subscription{{Topic: "order", Subscriber: "a", URL: "http://a"}, {Topic: "orders", Subscriber: "b", URL: "http://b"}} {
		if _, _, _, err := r.Subscribe(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	subs, err := r.List(t.Context(), "order")
	if err != nil || len(subs) != 1 || subs[0].Subscriber != "a" {
		t.Fatalf("List(order) = %+v, %v", subs, err)
	}
	all, err := r.List(t.Context(), "")
	if err != nil || len(all) != 2 || all[0].Topic != "order" || all[1].Topic != "orders" {
		t.Fatalf("List() = %+v, %v", all, err)
	}
	got, err := r.Resolve(t.Context(), []string{"orders", "order"})
	if err != nil || len(got) != 2 || got[0].Topic != "orders" {
		t.Fatalf("Resolve = %+v, %v", got, err)
	}
}
