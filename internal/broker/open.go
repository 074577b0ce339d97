package broker

import (
	"context"
	"fmt"
	"net"
	"time"
)

// connectTimeout bounds dialing a broker.
const connectTimeout = 10 * time.Second

// dialFunc dials a TCP connection; tests replace it to cut connections.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func defaultDial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: connectTimeout, KeepAlive: 15 * time.Second}
	return d.DialContext(ctx, network, addr)
}

// Open connects to d's broker and checks that the destination exists where
// that can be checked (the RabbitMQ exchange, the NATS stream, the type of
// the Redis key, the Kafka topic). A missing destination is a permanent
// error; an unreachable broker is retryable. The returned Publisher also
// implements BatchPublisher.
func Open(ctx context.Context, d Destination) (Publisher, error) {
	return open(ctx, d, defaultDial)
}

func open(ctx context.Context, d Destination, dial dialFunc) (BatchPublisher, error) {
	switch d.Kind {
	case RabbitMQ:
		return openAMQP(ctx, d, dial)
	case NATS:
		return openNATS(ctx, d, dial)
	case Redis:
		return openRedis(ctx, d, dial)
	case Kafka:
		return openKafka(ctx, d, dial)
	}
	return nil, fmt.Errorf("%w: unknown kind %q (use ParseDestination)", ErrBadDestination, d.Kind)
}
