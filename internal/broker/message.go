package broker

import (
	"context"
	"errors"
	"fmt"
)

// A Message is one message to publish.
type Message struct {
	// ID identifies the message for deduplication: a retry of the same
	// message must carry the same ID. Required.
	ID string
	// Key is the ordering key: messages with the same key are delivered in
	// publish order (Kafka also partitions by it). May be empty.
	Key string
	// Payload is the message body.
	Payload []byte
	// Headers are extra application headers.
	Headers map[string]string
}

// Header names the publishers add next to the application's headers.
const (
	// HeaderKey carries Message.Key where the broker has no key of its own
	// (RabbitMQ, NATS).
	HeaderKey = "Concord-Key"
	// HeaderID carries Message.ID where the broker has no message-id
	// property of its own (Kafka). RabbitMQ uses the message-id property and
	// NATS the Nats-Msg-Id header.
	HeaderID = "Concord-Msg-Id"
)

// A Publisher publishes messages to one destination.
type Publisher interface {
	// Publish returns nil once the broker confirmed m as durably accepted.
	// On error, m may or may not have been accepted unless IsPermanent(err).
	Publish(ctx context.Context, m Message) error
	// Close releases the connection. Publish after Close returns ErrClosed.
	Close() error
}

// A BatchPublisher also publishes several messages with one round of
// confirms: all messages are sent in order before any confirm is awaited.
// Every publisher Open returns implements it.
type BatchPublisher interface {
	Publisher
	// PublishBatch returns nil once the broker confirmed every message in
	// msgs. On error, any subset of msgs may have been accepted.
	PublishBatch(ctx context.Context, msgs []Message) error
}

// ErrClosed is returned by a publisher that was closed.
var ErrClosed = errors.New("broker: publisher closed")

func validateMessages(msgs []Message) error {
	for i := range msgs {
		if msgs[i].ID == "" {
			return fmt.Errorf("%w: message %d has an empty ID", ErrPermanent, i)
		}
	}
	return nil
}
