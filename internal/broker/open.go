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
		return opened(openAMQP(ctx, d, dial))
	case NATS:
		return opened(openNATS(ctx, d, dial))
	case Redis:
		return opened(openRedis(ctx, d, dial))
	case Kafka:
		return opened(openKafka(ctx, d, dial))
	}
	return nil, fmt.Errorf("%w: unknown kind %q (use ParseDestination)", ErrBadDestination, d.Kind)
}

// opened returns a nil interface on error: returned as is, a failed
// open's nil *amqpPublisher would be a non-nil Publisher whose Close
// panics (as BrokerCaller.Close did when a broker was unreachable).
func opened[P BatchPublisher](p P, err error) (BatchPublisher, error) {
	if err != nil {
		return nil, err
	}
	return p, nil
}
