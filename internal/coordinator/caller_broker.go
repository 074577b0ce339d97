package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/concordtm/concord/internal/broker"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/participant"
)

// BrokerCaller delivers messages to brokers: a branch URL amqp://, nats://,
// redis:// or kafka:// (see broker.ParseDestination) names where the
// payload is published. Success means the broker confirmed the message
// durable; a permanent refusal (no such exchange or stream, too large) is
// reported as rejected, anything else as unknown (retried with the same
// message id, which brokers that deduplicate absorb).
//
// The message id is gid/branch, the key the gid, and the headers carry
// Concord-Gid, Concord-Branch and Concord-Op, so a consumer can use the
// barrier or participant.Inbox to handle each message once.
type BrokerCaller struct {
	mu   sync.Mutex
	pubs map[string]*brokerConn
}

type brokerConn struct {
	once sync.Once
	pub  broker.Publisher
	err  error
	at   time.Time
}

// NewBrokerCaller returns a caller that opens one publisher per
// destination URL and keeps it.
func NewBrokerCaller() *BrokerCaller { return &BrokerCaller{pubs: map[string]*brokerConn{}} }

// IsBrokerURL reports whether raw names a broker destination.
func IsBrokerURL(raw string) bool {
	for _, s := range []string{"amqp://", "amqps://", "nats://", "redis://", "rediss://", "kafka://"} {
		if strings.HasPrefix(raw, s) {
			return true
		}
	}
	return false
}

// Call implements Caller.
func (b *BrokerCaller) Call(ctx context.Context, gid string, mode protocol.Mode, c protocol.Call) (protocol.Outcome, string) {
	if c.Op != protocol.OpDeliver {
		return protocol.OutcomeRejected, fmt.Sprintf("a broker destination can only be delivered to, not sent %q", c.Op)
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(c.Timeout))
		defer cancel()
	}
	pub, err := b.publisher(ctx, c.URL)
	if err != nil {
		if broker.IsPermanent(err) {
			return protocol.OutcomeRejected, err.Error()
		}
		return protocol.OutcomeUnknown, err.Error()
	}
	err = pub.Publish(ctx, broker.Message{
		ID: gid + "/" + c.Branch, Key: gid, Payload: c.Payload,
		Headers: map[string]string{
			participant.HeaderGID: gid, participant.HeaderBranch: c.Branch,
			participant.HeaderOp: string(c.Op), participant.HeaderMode: string(mode),
		},
	})
	switch {
	case err == nil:
		return protocol.OutcomeSuccess, ""
	case broker.IsPermanent(err):
		return protocol.OutcomeRejected, err.Error()
	default:
		return protocol.OutcomeUnknown, err.Error()
	}
}

// publisher returns the open publisher for raw, opening it once; a failed
// open is retried by a later call after a pause.
func (b *BrokerCaller) publisher(ctx context.Context, raw string) (broker.Publisher, error) {
	b.mu.Lock()
	bc := b.pubs[raw]
	if bc == nil || (bc.err != nil && time.Since(bc.at) > time.Second) {
		bc = &brokerConn{}
		b.pubs[raw] = bc
	}
	b.mu.Unlock()
	bc.once.Do(func() {
		d, err := broker.ParseDestination(raw)
		if err == nil {
			bc.pub, err = broker.Open(ctx, d)
		}
		// Under b.mu: other calls read err and at above, without Do.
		b.mu.Lock()
		bc.err, bc.at = err, time.Now()
		b.mu.Unlock()
	})
	return bc.pub, bc.err
}

// Close closes every publisher.
func (b *BrokerCaller) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, bc := range b.pubs {
		if bc.pub != nil {
			bc.pub.Close()
		}
		delete(b.pubs, k)
	}
	return nil
}

// Close closes the callers that hold connections (the broker publishers).
func (s *SchemeCaller) Close() error {
	var errs []error
	for _, c := range []Caller{s.HTTP, s.GRPC, s.Broker} {
		if cl, ok := c.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}
