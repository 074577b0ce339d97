package outbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/broker"
)

// ErrPermanent is wrapped by sink errors that retrying cannot fix; the
// relay parks such a row (status 'failed') for an operator. It is the same
// sentinel as the broker publishers', so the relay's default IsPermanent
// recognizes both; wrap it in your own sinks.
var ErrPermanent = broker.ErrPermanent

// maxGIDLen and the gid alphabet are the coordinator's rules for ids.
const maxGIDLen = 128

// CoordinatorConfig configures CoordinatorSink.
type CoordinatorConfig struct {
	// Namespace starts every gid the sink derives: name the producing
	// service (and its outbox, if it has several), so that two services'
	// message IDs never meet on the coordinator. Required: letters, digits,
	// '.', '_' and '-', at most 64 bytes.
	Namespace string
	// Destinations receive messages whose Destination column is empty. A
	// message with a Destination goes there alone. Each is an http(s)
	// consumer, a grpc(s):// method or a broker URL, as for
	// client.Message.To.
	Destinations []string
	// Options are the messages' limits (retries, budgets). They are part of
	// a message's content: keep them stable while rows are in flight, or a
	// resend after a crash conflicts with what the coordinator accepted.
	Options client.Options
	// WaitDelivered makes Send return only once every destination
	// acknowledged the message (the coordinator's status "succeeded"), so
	// the next message of the same key is handed to the coordinator only
	// after the previous one was delivered everywhere: per-key order then
	// holds at the consumers too (see the package documentation). Without
	// it, Send returns once the coordinator durably accepted the message.
	WaitDelivered bool
	// WaitTimeout bounds the wait for one message with WaitDelivered
	// (default 30s). On timeout Send fails retryably and its key backs off;
	// the message stays accepted and the resend waits for it again.
	WaitTimeout time.Duration
}

// CoordinatorSink hands each outbox row to the Concord coordinator c as a
// direct message (client.Message.Send), under a gid derived from the row's
// message ID (MessageGID), so a row sent again after a relay crash is the
// same message: the coordinator accepts it once and answers the resend
// with the message it already has, which counts as sent.
//
// Rows of one key are sent one after the other, each after the previous
// one's acceptance (or, with WaitDelivered, delivery); different keys go
// concurrently. Headers cannot be carried (the coordinator's messages
// have a payload only) and the payload must be UTF-8 text: rows that break
// either rule, or that the coordinator refuses as invalid or in conflict
// with a different message under the same gid, fail with ErrPermanent and
// are parked.
func CoordinatorSink(c *client.Client, cfg CoordinatorConfig) (Sink, error) {
	if c == nil {
		return nil, errors.New("outbox: CoordinatorSink: nil client")
	}
	if cfg.Namespace == "" || len(cfg.Namespace) > 64 || !gidSafe(cfg.Namespace, false) {
		return nil, fmt.Errorf("outbox: CoordinatorSink: namespace %q: use 1-64 letters, digits, '.', '_' or '-'", cfg.Namespace)
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 30 * time.Second
	}
	return &coordinatorSink{c: c, cfg: cfg}, nil
}

type coordinatorSink struct {
	c   *client.Client
	cfg CoordinatorConfig
}

// MessageGID is the gid under which CoordinatorSink hands message ID id to
// the coordinator in namespace ns: ns + ":" + id when id is a valid gid
// that starts with a letter or digit and the whole fits in 128 bytes,
// otherwise ns + "::" + the first 32 hex digits of id's SHA-256. Consumers
// see it as Concord-Gid and deduplicate on it (participant.Inbox or the
// barrier).
func MessageGID(ns, id string) string {
	if id != "" && isAlnum(id[0]) && gidSafe(id, true) && len(ns)+1+len(id) <= maxGIDLen {
		return ns + ":" + id
	}
	sum := sha256.Sum256([]byte(id))
	return ns + "::" + hex.EncodeToString(sum[:16])
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// gidSafe reports whether s uses only the coordinator's id alphabet
// (letters, digits, '.', '_', '-', and ':' if colon).
func gidSafe(s string, colon bool) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !isAlnum(b) && b != '.' && b != '_' && b != '-' && !(colon && b == ':') {
			return false
		}
	}
	return true
}

// Send hands msgs to the coordinator: per key in order, keys concurrently.
// It returns the first error of any key; the rows of that key after the
// failed one were not sent.
func (s *coordinatorSink) Send(ctx context.Context, msgs []Message) error {
	var groups [][]Message
	index := map[string]int{}
	for _, m := range msgs {
		if m.Key == "" { // unordered: a group of its own
			groups = append(groups, []Message{m})
			continue
		}
		i, ok := index[m.Key]
		if !ok {
			i = len(groups)
			index[m.Key] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], m)
	}
	if len(groups) == 1 {
		return s.sendKey(ctx, groups[0])
	}
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, g := range groups {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = s.sendKey(ctx, g)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *coordinatorSink) sendKey(ctx context.Context, msgs []Message) error {
	for _, m := range msgs {
		if err := s.sendOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *coordinatorSink) sendOne(ctx context.Context, m Message) error {
	gid := MessageGID(s.cfg.Namespace, m.ID)
	switch {
	case len(m.Headers) > 0:
		return fmt.Errorf("%w: outbox message %s has headers, which a coordinator message cannot carry (put them in the payload)", ErrPermanent, m.ID)
	case !utf8.Valid(m.Payload):
		return fmt.Errorf("%w: outbox message %s: the payload is not UTF-8 text, which a coordinator message needs (encode it, e.g. base64)", ErrPermanent, m.ID)
	}
	dests := s.cfg.Destinations
	if m.Destination != "" {
		dests = []string{m.Destination}
	}
	if len(dests) == 0 {
		return fmt.Errorf("%w: outbox message %s has no destination and the sink has no default", ErrPermanent, m.ID)
	}
	cm := s.c.NewMessage(gid).Payload(m.Payload)
	for _, d := range dests {
		cm.To(d)
	}
	if s.cfg.Options != (client.Options{}) {
		cm.WithOptions(s.cfg.Options)
	}
	tx, err := cm.Send(ctx)
	if err != nil {
		return s.classify(m, gid, err)
	}
	if !s.cfg.WaitDelivered || tx.Status == client.StatusSucceeded {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
	defer cancel()
	tx, err = s.c.Wait(wctx, gid)
	switch {
	case err != nil && ctx.Err() == nil && wctx.Err() != nil:
		return fmt.Errorf("outbox: message %s (gid %s) accepted but not delivered within %v; its key waits", m.ID, gid, s.cfg.WaitTimeout)
	case err != nil:
		return fmt.Errorf("outbox: wait for message %s (gid %s): %w", m.ID, gid, err)
	case tx.Status != client.StatusSucceeded:
		// Stuck: a destination kept failing. Retryable: an operator's
		// retry on the coordinator settles it, and the key waits for that.
		return fmt.Errorf("outbox: message %s (gid %s) is %s on the coordinator (%s); its key waits for an operator's retry", m.ID, gid, tx.Status, tx.StuckReason)
	}
	return nil
}

// classify maps the client's errors to the relay's two kinds. A resend of
// an accepted message is not an error at all (the coordinator answers it
// with the message), so a conflict means a different message under the
// same gid.
func (s *coordinatorSink) classify(m Message, gid string, err error) error {
	err = fmt.Errorf("outbox: send message %s as gid %s: %w", m.ID, gid, err)
	switch {
	case errors.Is(err, client.ErrConflict):
		return fmt.Errorf("%w: the coordinator holds a different message under this gid (another row with the same message ID, or the sink's destinations or options changed while it was in flight): %w", ErrPermanent, err)
	case errors.Is(err, client.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return err
}
