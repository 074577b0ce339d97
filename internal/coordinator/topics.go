package coordinator

import (
	"context"
	"fmt"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/topic"
)

// topics returns the subscription registry on the store, or an error
// wrapping topic.ErrUnsupported when the store has no store.Meta.
func (c *Coordinator) topics() (*topic.Registry, error) {
	m, ok := c.store.(store.Meta)
	if !ok {
		return nil, fmt.Errorf("%w (%T)", topic.ErrUnsupported, c.store)
	}
	return topic.NewRegistry(m), nil
}

// Subscribe creates or replaces the subscription (sub.Topic,
// sub.Subscriber). The URL must have been validated by the caller, like a
// message destination's. Repeating it changes nothing (changed = false).
// It affects messages accepted afterwards only.
func (c *Coordinator) Subscribe(ctx context.Context, sub topic.Subscription) (got topic.Subscription, created, changed bool, err error) {
	r, err := c.topics()
	if err != nil {
		return topic.Subscription{}, false, false, err
	}
	if sub.URL == "" {
		return topic.Subscription{}, false, false, fmt.Errorf("%w: a subscription needs a destination URL", ErrInvalid)
	}
	sub.UpdatedAt = now() / 1e6
	return r.Subscribe(ctx, sub)
}

// Unsubscribe deletes a subscription; an unknown one is an error wrapping
// topic.ErrNotSubscribed. Messages already accepted keep their
// destinations.
func (c *Coordinator) Unsubscribe(ctx context.Context, topicName, subscriber string) error {
	r, err := c.topics()
	if err != nil {
		return err
	}
	return r.Unsubscribe(ctx, topicName, subscriber)
}

// Subscriptions lists the subscriptions of a topic, or all of them when
// topicName is empty.
func (c *Coordinator) Subscriptions(ctx context.Context, topicName string) ([]topic.Subscription, error) {
	r, err := c.topics()
	if err != nil {
		return nil, err
	}
	return r.List(ctx, topicName)
}

// expandTopics returns the message's destinations followed by one per
// current subscription of each of its topics. This is the snapshot: the
// accepted message keeps exactly these destinations.
func (c *Coordinator) expandTopics(ctx context.Context, spec MessageSpec) ([]protocol.Branch, error) {
	dests := spec.Destinations
	if len(spec.Topics) > 0 {
		r, err := c.topics()
		if err != nil {
			return nil, err
		}
		subs, err := r.Resolve(ctx, spec.Topics)
		if err != nil {
			return nil, err
		}
		dests = append(make([]protocol.Branch, 0, len(dests)+len(subs)), dests...)
		seen := make(map[string]bool, len(dests))
		for _, d := range dests {
			seen[d.ID] = true
		}
		for _, s := range subs {
			id := s.DestinationID()
			if seen[id] {
				return nil, fmt.Errorf("%w: destination id %q is also the id of topic %q's subscriber %q", ErrInvalid, id, s.Topic, s.Subscriber)
			}
			seen[id] = true
			dests = append(dests, protocol.Branch{ID: id, ForwardURL: s.URL, Payload: spec.Payload})
		}
	}
	if spec.MaxDestinations > 0 && len(dests) > spec.MaxDestinations {
		return nil, fmt.Errorf("%w: the message has %d destinations with its topics' subscribers, at most %d allowed", ErrInvalid, len(dests), spec.MaxDestinations)
	}
	return dests, nil
}
