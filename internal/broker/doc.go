// Package broker publishes messages to real message brokers (RabbitMQ,
// NATS JetStream, Redis Streams, Kafka) and returns only once the broker
// has confirmed each message as durably accepted.
//
// A destination is a URL (see ParseDestination); Open returns a Publisher
// for it. Every publisher:
//
//   - confirms: Publish returns nil only after the broker acknowledged the
//     message (RabbitMQ publisher confirms with mandatory, persistent
//     delivery; a JetStream PubAck; the XADD reply; a Kafka produce response
//     with acks from all in-sync replicas);
//   - carries Message.ID to the broker as the message's identity, so that the
//     broker (NATS: Nats-Msg-Id; Redis: optional dedup key; Kafka: the
//     idempotent producer for its own retries) or the consumer (the inbox in
//     package participant) can drop duplicates;
//   - keeps the messages of one Publish or PublishBatch call in order on one
//     connection, so messages with the same Key arrive in the order they were
//     published;
//   - reconnects by itself after the connection drops;
//   - classifies errors: IsPermanent reports errors that will fail again
//     however often they are retried (a missing exchange or stream, an
//     unroutable message, a message too large); every other error is
//     retryable, and, since the broker may have accepted the message before
//     the connection broke, its outcome is unknown: retry with the same ID.
//
// Publishers are safe for concurrent use.
package broker
