package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// amqpPublisher publishes to a RabbitMQ exchange on one confirming channel.
//
// Unroutable messages: with mandatory set, RabbitMQ sends basic.return for
// a message no queue takes, always before that message's basic.ack, and
// amqp091 hands both to us from one reader goroutine in that order. The
// returns go into a buffered channel that each publisher drains after its
// confirms arrived, so a return is always visible by then. The buffer
// (returnBuffer) is larger than the number of messages allowed in flight
// (maxInFlight), so the reader never blocks on it.
type amqpPublisher struct {
	d    Destination
	url  string
	dial dialFunc
	// slots bounds the messages published but not yet confirmed.
	slots chan struct{}

	mu       sync.Mutex // guards everything below
	closed   bool
	conn     *amqp.Connection
	ch       *amqpChannel
	returned map[string]int // message ID -> returns not yet claimed
}

const (
	maxInFlight  = 1024
	returnBuffer = 2 * maxInFlight
)

// amqpChannel is one connection's confirming channel and why it closed.
type amqpChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return
	done    chan struct{} // closed when the channel closed; err set before
	err     *amqp.Error
}

func openAMQP(ctx context.Context, d Destination, dial dialFunc) (*amqpPublisher, error) {
	u := url.URL{Scheme: "amqp", Host: d.Addrs[0], Path: "/" + d.VHost}
	if d.TLS {
		u.Scheme = "amqps"
	}
	if d.User != "" || d.Password != "" {
		u.User = url.UserPassword(d.User, d.Password)
	}
	p := &amqpPublisher{
		d: d, url: u.String(), dial: dial,
		slots:    make(chan struct{}, maxInFlight),
		returned: make(map[string]int),
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.connectLocked(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// connectLocked returns the open channel, dialing a new connection if the
// old one is gone. p.mu is held.
func (p *amqpPublisher) connectLocked(ctx context.Context) (*amqpChannel, error) {
	if p.closed {
		return nil, ErrClosed
	}
	if p.ch != nil && !p.ch.ch.IsClosed() && !p.conn.IsClosed() {
		select {
		case <-p.ch.done:
		default:
			return p.ch, nil
		}
	}
	if p.conn != nil {
		_ = p.conn.Close() // the channel died; start over on a fresh connection
		p.conn, p.ch = nil, nil
	}
	cfg := amqp.Config{
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": "concord-broker"},
		Dial: func(network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, connectTimeout)
			defer cancel()
			conn, err := p.dial(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The handshake must not hang on a broker that accepts TCP but
			// does not answer (a node still booting), nor outlast the call
			// that opens it: p.mu is held meanwhile, and every other
			// publish waits. amqp091 clears the deadline afterwards.
			deadline := time.Now().Add(connectTimeout)
			if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
				deadline = d
			}
			_ = conn.SetDeadline(deadline)
			return conn, nil
		},
	}
	if p.d.TLS {
		cfg.TLSClientConfig = &tls.Config{ServerName: hostOnly(p.d.Addrs[0])}
	}
	conn, err := amqp.DialConfig(p.url, cfg)
	if err != nil {
		return nil, classifyAMQP(fmt.Errorf("broker: amqp connect %s: %w", p.d, err))
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, classifyAMQP(fmt.Errorf("broker: amqp channel: %w", err))
	}
	if p.d.Exchange != "" {
		// Passive declare: fails with 404 when the exchange is missing
		// (this closes the channel, and we give up on this connection).
		if err := ch.ExchangeDeclarePassive(p.d.Exchange, "direct", true, false, false, false, nil); err != nil {
			conn.Close()
			return nil, classifyAMQP(fmt.Errorf("broker: amqp exchange %q: %w", p.d.Exchange, err))
		}
	}
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, classifyAMQP(fmt.Errorf("broker: amqp confirm mode: %w", err))
	}
	c := &amqpChannel{ch: ch, done: make(chan struct{})}
	c.returns = ch.NotifyReturn(make(chan amqp.Return, returnBuffer))
	closes := ch.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		c.err = <-closes // nil when closed by us
		close(c.done)
	}()
	p.conn, p.ch = conn, c
	return c, nil
}

func (p *amqpPublisher) Publish(ctx context.Context, m Message) error {
	return p.PublishBatch(ctx, []Message{m})
}

func (p *amqpPublisher) PublishBatch(ctx context.Context, msgs []Message) error {
	if err := validateMessages(msgs); err != nil {
		return err
	}
	for start := 0; start < len(msgs); start += maxInFlight {
		end := min(start+maxInFlight, len(msgs))
		if err := p.publishChunk(ctx, msgs[start:end]); err != nil {
			return err
		}
	}
	return nil
}

func (p *amqpPublisher) publishChunk(ctx context.Context, msgs []Message) error {
	for range msgs {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() {
		for range msgs {
			<-p.slots
		}
	}()
	p.mu.Lock()
	c, err := p.connectLocked(ctx)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	// Publish under p.mu so that one batch's messages are contiguous on the
	// channel, in order.
	confirms := make([]*amqp.DeferredConfirmation, len(msgs))
	for i, m := range msgs {
		confirms[i], err = c.ch.PublishWithDeferredConfirmWithContext(ctx,
			p.d.Exchange, p.routingKey(m), true, false, amqpPublishing(m))
		if i == 0 && errors.Is(err, amqp.ErrClosed) {
			// The connection died since we last used it and nothing of
			// this batch was sent: reconnect once and start over.
			if c, err = p.connectLocked(ctx); err != nil {
				p.mu.Unlock()
				return err
			}
			confirms[i], err = c.ch.PublishWithDeferredConfirmWithContext(ctx,
				p.d.Exchange, p.routingKey(m), true, false, amqpPublishing(m))
		}
		if err != nil {
			// A failed write leaves the connection unusable even if amqp091
			// has not noticed yet: drop it so the next call redials.
			_ = p.conn.Close()
			p.conn, p.ch = nil, nil
			p.mu.Unlock()
			return classifyAMQP(fmt.Errorf("broker: amqp publish %s: %w", m.ID, err))
		}
	}
	p.mu.Unlock()
	for i, dc := range confirms {
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("broker: amqp confirm of %s: %w", msgs[i].ID, err)
		}
		if !acked {
			return p.nackError(ctx, c, msgs[i])
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claimReturnsLocked(c)
	var unroutable error
	for _, m := range msgs {
		if p.returned[m.ID] > 0 {
			if p.returned[m.ID]--; p.returned[m.ID] == 0 {
				delete(p.returned, m.ID)
			}
			if unroutable == nil {
				unroutable = permanent(fmt.Errorf("broker: amqp message %s: exchange %q has no queue bound for routing key %q",
					m.ID, p.d.Exchange, p.routingKey(m)), ErrUnroutable)
			}
		}
	}
	return unroutable
}

// claimReturnsLocked moves the returns the reader queued into p.returned.
func (p *amqpPublisher) claimReturnsLocked(c *amqpChannel) {
	for {
		select {
		case r, ok := <-c.returns:
			if !ok {
				return
			}
			p.returned[r.MessageId]++
		default:
			return
		}
	}
}

// nackError explains a message the broker did not confirm: the channel
// closed (with a reason that may be permanent, such as a deleted exchange
// or a message over max_message_size) or the broker nacked it.
func (p *amqpPublisher) nackError(ctx context.Context, c *amqpChannel, m Message) error {
	if c.ch.IsClosed() {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-c.done:
			if c.err != nil {
				return classifyAMQP(fmt.Errorf("broker: amqp message %s not confirmed, channel closed: %w", m.ID, c.err))
			}
		case <-t.C:
		case <-ctx.Done():
		}
		return fmt.Errorf("broker: amqp message %s not confirmed: connection lost", m.ID)
	}
	return fmt.Errorf("broker: amqp message %s nacked by the broker", m.ID)
}

func (p *amqpPublisher) routingKey(m Message) string {
	if p.d.RoutingKey != "" {
		return p.d.RoutingKey
	}
	return m.Key
}

func amqpPublishing(m Message) amqp.Publishing {
	h := make(amqp.Table, len(m.Headers)+1)
	for k, v := range m.Headers {
		h[k] = v
	}
	if m.Key != "" {
		h[HeaderKey] = m.Key
	}
	return amqp.Publishing{
		MessageId:    m.ID,
		DeliveryMode: amqp.Persistent,
		Headers:      h,
		Body:         m.Payload,
	}
}

func (p *amqpPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn, p.ch = nil, nil
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

// classifyAMQP marks errors the broker will repeat as permanent: a missing
// exchange or vhost, refused access, a refused message.
func classifyAMQP(err error) error {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Code {
	case amqp.ContentTooLarge, amqp.FrameError:
		return permanent(err, ErrTooLarge)
	case amqp.PreconditionFailed:
		// RabbitMQ reports a message over max_message_size this way.
		return permanent(err)
	case amqp.NotFound, amqp.AccessRefused, amqp.NoRoute, amqp.NotAllowed, amqp.InvalidPath:
		return permanent(err)
	}
	return err
}

func hostOnly(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}
