package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsPublisher publishes to a JetStream subject. nats.go reconnects by
// itself after a dropped connection; messages published meanwhile wait in
// its reconnect buffer or time out (a retryable error, and the retry is
// deduplicated by Nats-Msg-Id within the stream's duplicate window).
type natsPublisher struct {
	d  Destination
	nc *nats.Conn
	js jetstream.JetStream
	// mu orders batches: a batch's messages are sent contiguously.
	mu sync.Mutex
}

// natsAckTimeout bounds the wait for a PubAck when ctx has no deadline.
const natsAckTimeout = 10 * time.Second

// natsDialer adapts a dialFunc to nats.CustomDialer.
type natsDialer struct{ dial dialFunc }

func (n natsDialer) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	return n.dial(ctx, network, addr)
}

func openNATS(ctx context.Context, d Destination, dial dialFunc) (*natsPublisher, error) {
	urls := make([]string, len(d.Addrs))
	for i, a := range d.Addrs {
		urls[i] = "nats://" + a
	}
	opts := []nats.Option{
		nats.Name("concord-broker"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.Timeout(connectTimeout),
		nats.SetCustomDialer(natsDialer{dial}),
		nats.RetryOnFailedConnect(false),
	}
	if d.User != "" || d.Password != "" {
		opts = append(opts, nats.UserInfo(d.User, d.Password))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: nats connect %s: %w", d, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxInFlight))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("broker: nats jetstream: %w", err)
	}
	if d.Stream != "" {
		if _, err := js.Stream(ctx, d.Stream); err != nil {
			nc.Close()
			return nil, classifyNATS(fmt.Errorf("broker: nats stream %q: %w", d.Stream, err))
		}
	}
	return &natsPublisher{d: d, nc: nc, js: js}, nil
}

func (p *natsPublisher) msg(m Message) *nats.Msg {
	msg := nats.NewMsg(p.d.Subject)
	msg.Data = m.Payload
	for k, v := range m.Headers {
		msg.Header.Set(k, v)
	}
	if m.Key != "" {
		msg.Header.Set(HeaderKey, m.Key)
	}
	return msg
}

func (p *natsPublisher) opts(m Message) []jetstream.PublishOpt {
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(m.ID)}
	if p.d.Stream != "" {
		opts = append(opts, jetstream.WithExpectStream(p.d.Stream))
	}
	return opts
}

func (p *natsPublisher) Publish(ctx context.Context, m Message) error {
	if err := validateMessages([]Message{m}); err != nil {
		return err
	}
	if p.nc.IsClosed() {
		return ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, natsAckTimeout)
		defer cancel()
	}
	_, err := p.js.PublishMsg(ctx, p.msg(m), p.opts(m)...)
	if err != nil {
		return p.publishError(ctx, m, err)
	}
	return nil
}

func (p *natsPublisher) PublishBatch(ctx context.Context, msgs []Message) error {
	if err := validateMessages(msgs); err != nil {
		return err
	}
	if p.nc.IsClosed() {
		return ErrClosed
	}
	timeout := time.NewTimer(natsAckTimeout)
	defer timeout.Stop()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	p.mu.Lock()
	for _, m := range msgs {
		f, err := p.js.PublishMsgAsync(p.msg(m), p.opts(m)...)
		if err != nil {
			p.mu.Unlock()
			return p.publishError(ctx, m, err)
		}
		futures = append(futures, f)
	}
	p.mu.Unlock()
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return p.publishError(ctx, msgs[i], err)
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("broker: nats message %s: no PubAck within %v", msgs[i].ID, natsAckTimeout)
		}
	}
	return nil
}

// publishError classifies a failed publish. "No responders" means no
// stream captures the subject right now: permanent if no stream is
// configured for it, retryable if one is (JetStream may be restarting).
func (p *natsPublisher) publishError(ctx context.Context, m Message, err error) error {
	err = fmt.Errorf("broker: nats publish %s to %q: %w", m.ID, p.d.Subject, err)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if _, lerr := p.js.StreamNameBySubject(lctx, p.d.Subject); errors.Is(lerr, jetstream.ErrStreamNotFound) {
			return permanent(fmt.Errorf("%w (no stream captures the subject)", err))
		}
		return err
	}
	if errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return classifyNATS(err)
}

func classifyNATS(err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		return permanent(err, ErrTooLarge)
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return permanent(err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.Code {
		case 400, 404:
			return permanent(err)
		case 413:
			return permanent(err, ErrTooLarge)
		}
	}
	return err
}

func (p *natsPublisher) Close() error {
	if p.nc.IsClosed() {
		return nil
	}
	// Every message Publish reported as done was confirmed; nothing
	// buffered needs flushing.
	p.nc.Close()
	return nil
}
