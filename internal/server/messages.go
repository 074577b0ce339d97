package server

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/internal/broker"
	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/protocol"
)

// checkDestination accepts what checkURL accepts, plus broker URLs
// (amqp, nats, redis, kafka; see broker.ParseDestination).
func checkDestination(what, raw string) error {
	if coordinator.IsBrokerURL(raw) {
		if _, err := broker.ParseDestination(raw); err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		return nil
	}
	if err := checkURL(what, raw); err != nil {
		return fmt.Errorf("%w (or a broker: amqp://, nats://, redis://, kafka://)", err)
	}
	return nil
}

func (s *Service) checkMessage(gid string, dests []*v1.MessageDestination, topics []string, payload string, o *v1.TransactionOptions, delayMs int64) error {
	if err := checkID("gid", gid, false); err != nil {
		return err
	}
	if len(dests) == 0 && len(topics) == 0 {
		return fmt.Errorf("destinations: a message needs at least one destination or topic")
	}
	if err := s.checkTopics(topics); err != nil {
		return err
	}
	if len(dests) > s.limits.MaxBranches {
		return fmt.Errorf("destinations: %d given, at most %d allowed", len(dests), s.limits.MaxBranches)
	}
	if err := s.checkPayload("message", payload); err != nil {
		return err
	}
	for i, d := range dests {
		what := fmt.Sprintf("destinations[%d]", i)
		if err := checkID(what+".id", d.Id, false); err != nil {
			return err
		}
		if err := s.checkDestination(what+".url", d.Url); err != nil {
			return err
		}
		if err := s.checkPayload(what, d.Payload); err != nil {
			return err
		}
		body := d.Payload
		if body == "" {
			body = payload
		}
		if err := checkMessagePayload(what, d.Url, body); err != nil {
			return err
		}
	}
	if delayMs < 0 || delayMs > maxDuration {
		return fmt.Errorf("delay_ms = %d: must be between 0 and %d (30 days)", delayMs, maxDuration)
	}
	return checkOptions(o)
}

func (s *Service) messageSpec(gid string, dests []*v1.MessageDestination, topics []string, payload string, o *v1.TransactionOptions, delayMs int64) coordinator.MessageSpec {
	spec := coordinator.MessageSpec{GID: gid, Options: optionsFromProto(o), Delay: time.Duration(delayMs) * time.Millisecond}
	if len(topics) > 0 {
		spec.Topics = topics
		spec.Payload = []byte(payload)
		spec.MaxDestinations = s.limits.MaxBranches
	}
	for _, d := range dests {
		p := d.Payload
		if p == "" {
			p = payload
		}
		spec.Destinations = append(spec.Destinations, protocol.Branch{ID: d.Id, ForwardURL: d.Url, Payload: []byte(p)})
	}
	return spec
}

func (s *Service) PrepareMessage(ctx context.Context, req *connect.Request[v1.PrepareMessageRequest]) (*connect.Response[v1.SubmitResponse], error) {
	r := req.Msg
	if err := s.checkMessage(r.Gid, r.Destinations, r.Topics, r.Payload, r.Options, r.DelayMs); err != nil {
		return nil, invalid(err)
	}
	if err := s.checkBranchURL("check_url", r.CheckUrl); err != nil {
		return nil, invalid(err)
	}
	spec := s.messageSpec(r.Gid, r.Destinations, r.Topics, r.Payload, r.Options, r.DelayMs)
	spec.CheckURL = r.CheckUrl
	t, err := s.coord.PrepareMessage(ctx, spec)
	if err != nil {
		return nil, apiError(err)
	}
	return s.respond(ctx, t, false)
}

func (s *Service) SendMessage(ctx context.Context, req *connect.Request[v1.SendMessageRequest]) (*connect.Response[v1.SubmitResponse], error) {
	r := req.Msg
	if err := s.checkMessage(r.Gid, r.Destinations, r.Topics, r.Payload, r.Options, r.DelayMs); err != nil {
		return nil, invalid(err)
	}
	t, err := s.coord.SendMessage(ctx, s.messageSpec(r.Gid, r.Destinations, r.Topics, r.Payload, r.Options, r.DelayMs))
	if err != nil {
		return nil, apiError(err)
	}
	return s.respond(ctx, t, r.Wait)
}

func (s *Service) SubmitMessage(ctx context.Context, req *connect.Request[v1.EndMessageRequest]) (*connect.Response[v1.SubmitResponse], error) {
	if err := checkID("gid", req.Msg.Gid, true); err != nil {
		return nil, invalid(err)
	}
	t, err := s.coord.SubmitMessage(ctx, req.Msg.Gid)
	if err != nil {
		return nil, apiError(err)
	}
	return s.respond(ctx, t, req.Msg.Wait)
}

func (s *Service) AbortMessage(ctx context.Context, req *connect.Request[v1.EndMessageRequest]) (*connect.Response[v1.SubmitResponse], error) {
	if err := checkID("gid", req.Msg.Gid, true); err != nil {
		return nil, invalid(err)
	}
	if len(req.Msg.Reason) > 1024 {
		return nil, invalid(fmt.Errorf("reason is %d bytes long, at most 1024 allowed", len(req.Msg.Reason)))
	}
	t, err := s.coord.AbortMessage(ctx, req.Msg.Gid, req.Msg.Reason)
	if err != nil {
		return nil, apiError(err)
	}
	return s.respond(ctx, t, req.Msg.Wait)
}
