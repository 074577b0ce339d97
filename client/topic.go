package client

import (
	"context"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// Subscription is a subscriber of a topic (see Client.Subscribe).
type Subscription = v1.Subscription

// Subscribe creates or replaces the subscription (topic, subscriber):
// messages that name the topic (Message.ToTopic) and are accepted from now
// on are also delivered to url, any destination a message accepts. It is
// idempotent; created reports that the subscription is new.
func (c *Client) Subscribe(ctx context.Context, topic, subscriber, url string) (sub *Subscription, created bool, err error) {
	resp, err := c.rpc.Subscribe(ctx, connect.NewRequest(&v1.SubscribeRequest{Topic: topic, Subscriber: subscriber, Url: url}))
	if err != nil {
		return nil, false, wrap(err)
	}
	return resp.Msg.Subscription, resp.Msg.Created, nil
}

// Unsubscribe deletes a subscription; one that does not exist is an error
// wrapping ErrNotFound. Messages already accepted are still delivered to
// it.
func (c *Client) Unsubscribe(ctx context.Context, topic, subscriber string) error {
	_, err := c.rpc.Unsubscribe(ctx, connect.NewRequest(&v1.UnsubscribeRequest{Topic: topic, Subscriber: subscriber}))
	return wrap(err)
}

// Subscriptions lists the subscriptions of topic, or of every topic when
// topic is "", ordered by topic, then subscriber.
func (c *Client) Subscriptions(ctx context.Context, topic string) ([]*Subscription, error) {
	resp, err := c.rpc.ListSubscriptions(ctx, connect.NewRequest(&v1.ListSubscriptionsRequest{Topic: topic}))
	if err != nil {
		return nil, wrap(err)
	}
	return resp.Msg.Subscriptions, nil
}
