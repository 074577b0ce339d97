// Package topic holds the names and the stored form of topic subscriptions
// for reliable messages.
//
// A topic is a name that messages may address instead of (or besides)
// explicit destinations. A subscription is (topic, subscriber name,
// destination URL). When a message naming a topic is accepted, the
// coordinator expands the topic into one destination per current
// subscription, whose id is "topic:subscriber"; from then on each is an
// ordinary destination, delivered and retried on its own, and later
// subscription changes do not touch the accepted message.
//
// Subscriptions are store.Meta entries under "topic/<topic>/<subscriber>",
// so every coordinator sharing a store sees the same ones. The package is
// pure: Registry is the only part that calls the store.
package topic

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Name limits: a destination id is topic + ":" + subscriber, and branch
// ids are at most 128 bytes.
const (
	MaxTopicLen      = 63
	MaxSubscriberLen = 64
)

// Sentinel errors, wrapped with %w.
var (
	// ErrInvalid: a bad topic or subscriber name.
	ErrInvalid = errors.New("topic: invalid name")
	// ErrNoSubscribers: a message names a topic that has no subscription;
	// it is refused rather than delivered to nobody.
	ErrNoSubscribers = errors.New("topic: no subscribers")
	// ErrNotSubscribed: Unsubscribe of a subscription that does not exist.
	ErrNotSubscribed = errors.New("topic: no such subscription")
	// ErrUnsupported: the store cannot keep subscriptions (no store.Meta).
	ErrUnsupported = errors.New("topic: the store does not support topics")
)

// Subscription is one subscriber of a topic.
type Subscription struct {
	Topic      string
	Subscriber string
	URL        string
	// UpdatedAt is when it was created or last replaced (unix ms).
	UpdatedAt int64
}

// DestinationID is the id of the message destination this subscription
// becomes: "topic:subscriber".
func (s Subscription) DestinationID() string {
	return s.Topic + ":" + s.Subscriber
}

// CheckName validates a topic (max MaxTopicLen) or subscriber (max
// MaxSubscriberLen) name: letters, digits, '.', '_' and '-'.
func CheckName(what, name string, maxLen int) error {
	if name == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalid, what)
	}
	if len(name) > maxLen {
		return fmt.Errorf("%w: %s %.20q... is %d bytes long, at most %d allowed", ErrInvalid, what, name, len(name), maxLen)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("%w: %s %q contains %q: use letters, digits and . _ -", ErrInvalid, what, name, r)
		}
	}
	return nil
}

// CheckTopic validates a topic name.
func CheckTopic(name string) error { return CheckName("topic", name, MaxTopicLen) }

// CheckSubscriber validates a subscriber name.
func CheckSubscriber(name string) error { return CheckName("subscriber", name, MaxSubscriberLen) }

// keyPrefix starts every subscription's store.Meta key.
const keyPrefix = "topic/"

// Key is the store.Meta key of a subscription.
func Key(topic, subscriber string) string {
	return keyPrefix + topic + "/" + subscriber
}

// Prefix is the store.Meta key prefix of a topic's subscriptions, or of
// all subscriptions when topic is empty.
func Prefix(topic string) string {
	if topic == "" {
		return keyPrefix
	}
	return keyPrefix + topic + "/"
}

// value is the stored form of a subscription, beside its key.
type value struct {
	URL       string `json:"url"`
	UpdatedAt int64  `json:"updated_at_unix_ms"`
}

// Encode returns the stored value of s.
func Encode(s Subscription) []byte {
	b, _ := json.Marshal(value{URL: s.URL, UpdatedAt: s.UpdatedAt})
	return b
}

// Decode reads a subscription back from its key and stored value.
func Decode(key string, v []byte) (Subscription, error) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	topic, sub, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || CheckTopic(topic) != nil || CheckSubscriber(sub) != nil {
		return Subscription{}, fmt.Errorf("topic: stored subscription key %q is malformed", key)
	}
	var val value
	if err := json.Unmarshal(v, &val); err != nil || val.URL == "" {
		return Subscription{}, fmt.Errorf("topic: stored subscription %q is malformed: %q", key, v)
	}
	return Subscription{Topic: topic, Subscriber: sub, URL: val.URL, UpdatedAt: val.UpdatedAt}, nil
}
