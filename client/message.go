package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/participant"
)

// Message builds a reliable message: its producer's local transaction and
// the message are atomic, and the coordinator delivers it to every
// destination, retrying until each acknowledges.
//
// Two ways to send one:
//
//   - transactional: Prepare (the coordinator holds it), run the local
//     transaction, then Submit, or Abort if it rolled back. If the producer
//     dies in between, the coordinator asks the check-back URL, which the
//     producer serves with participant.Barrier's CheckBackHandler; DoAndSubmit
//     does the three steps with the barrier;
//   - direct: Send, when there is nothing to wait for (the producer already
//     committed, e.g. an outbox relay).
type Message struct {
	c       *Client
	gid     string
	payload string
	dests   []*v1.MessageDestination
	topics  []string
	opts    *v1.TransactionOptions
	delay   time.Duration
	err     error
}

// NewMessage starts building a message under gid ("" mints one in the SDK,
// so a call whose outcome is unknown can be repeated safely).
func (c *Client) NewMessage(gid string) *Message {
	if gid == "" {
		gid = newGID()
	}
	return &Message{c: c, gid: gid}
}

// GID returns the message's global id (the transaction id the producer's
// barrier and the consumers' barriers record).
func (m *Message) GID() string { return m.gid }

// Payload sets the body delivered to every destination that has none of
// its own (a []byte or string verbatim, anything else as JSON).
func (m *Message) Payload(payload any) *Message {
	p, err := encodePayload(payload)
	if err != nil && m.err == nil {
		m.err = fmt.Errorf("%w: message payload: %v", ErrInvalid, err)
	}
	m.payload = p
	return m
}

// To adds a destination: an http(s) consumer, a grpc(s):// method, or a
// broker URL (amqp://, nats://, redis://, kafka://).
func (m *Message) To(url string) *Message { return m.ToBranch("", url, nil) }

// ToTopic adds a topic: when the coordinator accepts the message, every
// current subscriber of the topic becomes a destination "topic:subscriber"
// that gets the message's payload. Subscribers added or removed later do
// not change an accepted message. A topic without subscribers makes
// Prepare and Send fail with ErrPrecondition, and nothing is accepted.
func (m *Message) ToTopic(topic string) *Message {
	m.topics = append(m.topics, topic)
	return m
}

// ToBranch adds a destination with an id and its own payload (nil: the
// message's).
func (m *Message) ToBranch(id, url string, payload any) *Message {
	var p string
	if payload != nil {
		var err error
		if p, err = encodePayload(payload); err != nil && m.err == nil {
			m.err = fmt.Errorf("%w: destination %d payload: %v", ErrInvalid, len(m.dests)+1, err)
		}
	}
	m.dests = append(m.dests, &v1.MessageDestination{Id: id, Url: url, Payload: p})
	return m
}

// WithOptions sets per-message limits. Timeout is how long a prepared
// message waits for Submit or Abort before the coordinator checks back.
func (m *Message) WithOptions(o Options) *Message { m.opts = o.proto(); return m }

// Delay holds every delivery back by d after the coordinator accepts it.
func (m *Message) Delay(d time.Duration) *Message { m.delay = d; return m }

// Prepare registers the message as prepared: nothing is delivered until
// Submit. checkURL is the producer's check-back endpoint.
func (m *Message) Prepare(ctx context.Context, checkURL string) (*Transaction, error) {
	if m.err != nil {
		return nil, m.err
	}
	resp, err := m.c.rpc.PrepareMessage(ctx, connect.NewRequest(&v1.PrepareMessageRequest{
		Gid: m.gid, Destinations: m.dests, Topics: m.topics, Payload: m.payload, CheckUrl: checkURL,
		Options: m.opts, DelayMs: m.delay.Milliseconds(),
	}))
	if err != nil {
		return nil, wrap(err)
	}
	return fromProto(resp.Msg.Transaction), nil
}

// Submit tells the coordinator that the local transaction committed: the
// prepared message is delivered.
func (m *Message) Submit(ctx context.Context) (*Transaction, error) { return m.submit(ctx, false) }

// SubmitAndWait submits and waits until every destination acknowledged
// (or the message is stuck).
func (m *Message) SubmitAndWait(ctx context.Context) (*Transaction, error) {
	tx, err := m.submit(ctx, true)
	if err != nil || Settled(tx) {
		return tx, err
	}
	return m.c.Wait(ctx, tx.GID)
}

func (m *Message) submit(ctx context.Context, wait bool) (*Transaction, error) {
	resp, err := m.c.rpc.SubmitMessage(ctx, connect.NewRequest(&v1.EndMessageRequest{Gid: m.gid, Wait: wait}))
	if err != nil {
		return nil, wrap(err)
	}
	return fromProto(resp.Msg.Transaction), nil
}

// Abort tells the coordinator that the local transaction rolled back: the
// prepared message is dropped.
func (m *Message) Abort(ctx context.Context, reason string) (*Transaction, error) {
	resp, err := m.c.rpc.AbortMessage(ctx, connect.NewRequest(&v1.EndMessageRequest{Gid: m.gid, Reason: reason}))
	if err != nil {
		return nil, wrap(err)
	}
	return fromProto(resp.Msg.Transaction), nil
}

// Send delivers a message that waits for nothing.
func (m *Message) Send(ctx context.Context) (*Transaction, error) { return m.send(ctx, false) }

// SendAndWait sends and waits until every destination acknowledged (or the
// message is stuck).
func (m *Message) SendAndWait(ctx context.Context) (*Transaction, error) {
	tx, err := m.send(ctx, true)
	if err != nil || Settled(tx) {
		return tx, err
	}
	return m.c.Wait(ctx, tx.GID)
}

func (m *Message) send(ctx context.Context, wait bool) (*Transaction, error) {
	if m.err != nil {
		return nil, m.err
	}
	resp, err := m.c.rpc.SendMessage(ctx, connect.NewRequest(&v1.SendMessageRequest{
		Gid: m.gid, Destinations: m.dests, Topics: m.topics, Payload: m.payload, Options: m.opts,
		DelayMs: m.delay.Milliseconds(), Wait: wait,
	}))
	if err != nil {
		return nil, wrap(err)
	}
	return fromProto(resp.Msg.Transaction), nil
}

// LocalTx runs the producer's local transaction for message gid and
// records, in that same transaction, that it committed (see
// participant.Barrier.DoMessage, which implements it).
type LocalTx func(ctx context.Context, gid string) error

// DoAndSubmit prepares the message, runs the local transaction, and
// submits the message if it committed or aborts it if it failed. local
// must record its outcome where the check-back can read it (use
// participant.Barrier.DoMessage). A failure to reach the coordinator after
// the local transaction leaves the decision to the check-back, which is
// exact; the returned error then says so.
func (m *Message) DoAndSubmit(ctx context.Context, checkURL string, local LocalTx) error {
	if _, err := m.Prepare(ctx, checkURL); err != nil {
		return err
	}
	if lerr := local(ctx, m.gid); lerr != nil {
		if errors.Is(lerr, participant.ErrOutcomeUnknown) {
			return fmt.Errorf("the local transaction's outcome is unknown; the check-back settles message %s: %w", m.gid, lerr)
		}
		if _, err := m.Abort(ctx, lerr.Error()); err != nil {
			return errors.Join(lerr, fmt.Errorf("abort message %s (the check-back will drop it): %w", m.gid, err))
		}
		return lerr
	}
	if _, err := m.Submit(ctx); err != nil {
		return fmt.Errorf("the local transaction committed; submit message %s failed, the check-back will deliver it: %w", m.gid, err)
	}
	return nil
}
