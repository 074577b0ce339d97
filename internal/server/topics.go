package server

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/internal/destination"
	"github.com/concordtm/concord/internal/topic"
)

// checkTopics validates the topic names of a message.
func (s *Service) checkTopics(topics []string) error {
	if len(topics) > s.limits.MaxBranches {
		return fmt.Errorf("topics: %d given, at most %d allowed", len(topics), s.limits.MaxBranches)
	}
	seen := make(map[string]bool, len(topics))
	for i, t := range topics {
		if err := topic.CheckTopic(t); err != nil {
			return fmt.Errorf("topics[%d]: %w", i, err)
		}
		if seen[t] {
			return fmt.Errorf("topics[%d]: topic %q is named twice", i, t)
		}
		seen[t] = true
	}
	return nil
}

// checkSubscribe validates a Subscribe request without the coordinator.
func checkSubscribe(r *v1.SubscribeRequest) error {
	if err := topic.CheckTopic(r.Topic); err != nil {
		return err
	}
	if err := topic.CheckSubscriber(r.Subscriber); err != nil {
		return err
	}
	return checkDestination("subscription", r.Url)
}

func subscriptionProto(sub topic.Subscription) *v1.Subscription {
	return &v1.Subscription{Topic: sub.Topic, Subscriber: sub.Subscriber, Url: destination.Redact(sub.URL), UpdatedAtUnixMs: sub.UpdatedAt}
}

func (s *Service) Subscribe(ctx context.Context, req *connect.Request[v1.SubscribeRequest]) (*connect.Response[v1.SubscribeResponse], error) {
	r := req.Msg
	if err := checkSubscribe(r); err != nil {
		return nil, invalid(err)
	}
	if err := s.allowed("subscription", r.Url); err != nil {
		return nil, invalid(err)
	}
	sub, created, changed, err := s.coord.Subscribe(ctx, topic.Subscription{Topic: r.Topic, Subscriber: r.Subscriber, URL: r.Url})
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&v1.SubscribeResponse{Subscription: subscriptionProto(sub), Created: created, Changed: changed}), nil
}

func (s *Service) Unsubscribe(ctx context.Context, req *connect.Request[v1.UnsubscribeRequest]) (*connect.Response[v1.UnsubscribeResponse], error) {
	r := req.Msg
	if err := topic.CheckTopic(r.Topic); err != nil {
		return nil, invalid(err)
	}
	if err := topic.CheckSubscriber(r.Subscriber); err != nil {
		return nil, invalid(err)
	}
	if err := s.coord.Unsubscribe(ctx, r.Topic, r.Subscriber); err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&v1.UnsubscribeResponse{}), nil
}

func (s *Service) ListSubscriptions(ctx context.Context, req *connect.Request[v1.ListSubscriptionsRequest]) (*connect.Response[v1.ListSubscriptionsResponse], error) {
	if t := req.Msg.Topic; t != "" {
		if err := topic.CheckTopic(t); err != nil {
			return nil, invalid(err)
		}
	}
	subs, err := s.coord.Subscriptions(ctx, req.Msg.Topic)
	if err != nil {
		return nil, apiError(err)
	}
	out := &v1.ListSubscriptionsResponse{Subscriptions: make([]*v1.Subscription, 0, len(subs))}
	for _, sub := range subs {
		out.Subscriptions = append(out.Subscriptions, subscriptionProto(sub))
	}
	return connect.NewResponse(out), nil
}
