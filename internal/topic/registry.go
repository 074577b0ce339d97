package topic

import (
	"context"
	"errors"
	"fmt"

	"github.com/concordtm/concord/internal/store"
)

// Registry keeps subscriptions in a store.Meta.
type Registry struct {
	m store.Meta
}

// NewRegistry returns a Registry on m.
func NewRegistry(m store.Meta) *Registry { return &Registry{m: m} }

// casAttempts bounds Subscribe's read-compare-write loop under contention.
const casAttempts = 10

// Subscribe creates or replaces a subscription (sub.UpdatedAt is the
// caller's clock). Repeating it with the same URL changes nothing and
// reports changed = false.
func (r *Registry) Subscribe(ctx context.Context, sub Subscription) (got Subscription, created, changed bool, err error) {
	if err := CheckTopic(sub.Topic); err != nil {
		return Subscription{}, false, false, err
	}
	if err := CheckSubscriber(sub.Subscriber); err != nil {
		return Subscription{}, false, false, err
	}
	key := Key(sub.Topic, sub.Subscriber)
	for range casAttempts {
		var expected int64
		e, err := r.m.GetMeta(ctx, key)
		switch {
		case err == nil:
			old, err := Decode(key, e.Value)
			if err == nil && old.URL == sub.URL {
				return old, false, false, nil
			}
			expected = e.Version
		case !errors.Is(err, store.ErrNotFound):
			return Subscription{}, false, false, err
		}
		_, err = r.m.PutMeta(ctx, key, Encode(sub), expected)
		if err == nil {
			return sub, expected == 0, true, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return Subscription{}, false, false, err
		}
	}
	return Subscription{}, false, false, fmt.Errorf("topic: subscribing %s: %w: too many concurrent changes, retry", key, store.ErrConflict)
}

// Unsubscribe deletes a subscription; one that does not exist is an error
// wrapping ErrNotSubscribed.
func (r *Registry) Unsubscribe(ctx context.Context, topic, subscriber string) error {
	if err := CheckTopic(topic); err != nil {
		return err
	}
	if err := CheckSubscriber(subscriber); err != nil {
		return err
	}
	err := r.m.DeleteMeta(ctx, Key(topic, subscriber), store.MetaAny)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: topic %q, subscriber %q", ErrNotSubscribed, topic, subscriber)
	}
	return err
}

// List returns the subscriptions of topic (all of them when topic is
// empty), by topic, then subscriber.
func (r *Registry) List(ctx context.Context, topic string) ([]Subscription, error) {
	if topic != "" {
		if err := CheckTopic(topic); err != nil {
			return nil, err
		}
	}
	es, err := r.m.ListMeta(ctx, Prefix(topic))
	if err != nil {
		return nil, err
	}
	subs := make([]Subscription, 0, len(es))
	for _, e := range es {
		s, err := Decode(e.Key, e.Value)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", store.ErrCorrupt, err)
		}
		subs = append(subs, s)
	}
	return subs, nil
}

// Resolve returns the current subscriptions of every topic, in the order
// of topics. A topic named twice, or with no subscriber, is an error that
// names it.
func (r *Registry) Resolve(ctx context.Context, topics []string) ([]Subscription, error) {
	seen := make(map[string]bool, len(topics))
	var out []Subscription
	for i, t := range topics {
		if err := CheckTopic(t); err != nil {
			return nil, fmt.Errorf("topics[%d]: %w", i, err)
		}
		if seen[t] {
			return nil, fmt.Errorf("%w: topics[%d]: topic %q is named twice", ErrInvalid, i, t)
		}
		seen[t] = true
		subs, err := r.List(ctx, t)
		if err != nil {
			return nil, err
		}
		if len(subs) == 0 {
			return nil, fmt.Errorf("%w: topic %q", ErrNoSubscribers, t)
		}
		out = append(out, subs...)
	}
	return out, nil
}
