package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redisPublisher appends to a Redis stream with XADD. The entry's fields
// are FieldID, FieldKey, FieldPayload, then one HeaderFieldPrefix+name field
// per header. The XADD reply is the confirmation: Redis has applied the
// write (its durability is the server's appendonly/fsync setting).
//
// With a dedup window (dedup_ttl), a Lua script sets the key
// DedupKey(stream, id) with SET NX PX and adds the entry only if that set
// succeeded, atomically, so a retried message within the window is added
// once.
type redisPublisher struct {
	d      Destination
	client *redis.Client
}

// Field names of a stream entry.
const (
	FieldID           = "id"
	FieldKey          = "key"
	FieldPayload      = "payload"
	HeaderFieldPrefix = "h:"
)

// DedupKey is the Redis key that marks message id as added to stream. The
// hash tag keeps it in the stream's cluster slot.
func DedupKey(stream, id string) string { return "concord:dedup:{" + stream + "}:" + id }

// redisDedupXAdd: KEYS = stream, dedup key; ARGV = ttl ms, maxlen (0 =
// none), field, value, ... Returns the new entry's id, or the id of the
// entry added earlier for the same message.
//
// The dedup key is written only after XADD succeeded: Redis does not roll a
// script back, so a key set before a failing XADD would make every retry
// of the message look like a duplicate and lose it.
const redisDedupXAdd = `
local seen = redis.call('GET', KEYS[2])
if seen then return seen end
local args = {KEYS[1]}
if ARGV[2] ~= '0' then
  table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[2])
end
table.insert(args, '*')
for i = 3, #ARGV do table.insert(args, ARGV[i]) end
local id = redis.call('XADD', unpack(args))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return id
`

func openRedis(ctx context.Context, d Destination, dial dialFunc) (*redisPublisher, error) {
	opts := &redis.Options{
		Addr:       d.Addrs[0],
		Username:   d.User,
		Password:   d.Password,
		DB:         d.DB,
		ClientName: "concord-broker",
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dial(ctx, network, addr)
		},
		// A command on a dropped pooled connection fails; go-redis retries
		// it on a fresh one.
		MaxRetries: 3,
	}
	if d.TLS {
		opts.TLSConfig = &tls.Config{ServerName: hostOnly(d.Addrs[0])}
	}
	client := redis.NewClient(opts)
	typ, err := client.Type(ctx, d.Stream).Result()
	if err != nil {
		client.Close()
		return nil, classifyRedis(fmt.Errorf("broker: redis %s: %w", d, err))
	}
	if typ != "none" && typ != "stream" {
		client.Close()
		return nil, permanent(fmt.Errorf("broker: redis key %q is a %s, not a stream", d.Stream, typ))
	}
	return &redisPublisher{d: d, client: client}, nil
}

func (p *redisPublisher) values(m Message) []any {
	v := make([]any, 0, 6+2*len(m.Headers))
	v = append(v, FieldID, m.ID, FieldKey, m.Key, FieldPayload, m.Payload)
	for k, h := range m.Headers {
		v = append(v, HeaderFieldPrefix+k, h)
	}
	return v
}

// cmd queues the command that adds m on c (a client or a pipeline).
func (p *redisPublisher) cmd(ctx context.Context, c redis.Cmdable, m Message) redis.Cmder {
	if p.d.DedupTTL > 0 {
		args := append([]any{p.d.DedupTTL.Milliseconds(), strconv.FormatInt(p.d.MaxLen, 10)}, p.values(m)...)
		return c.Eval(ctx, redisDedupXAdd, []string{p.d.Stream, DedupKey(p.d.Stream, m.ID)}, args...)
	}
	return c.XAdd(ctx, &redis.XAddArgs{Stream: p.d.Stream, MaxLen: p.d.MaxLen, Approx: p.d.MaxLen > 0, Values: p.values(m)})
}

func (p *redisPublisher) Publish(ctx context.Context, m Message) error {
	return p.PublishBatch(ctx, []Message{m})
}

// PublishBatch sends the messages in one pipeline (one round trip); Redis
// runs them in order.
func (p *redisPublisher) PublishBatch(ctx context.Context, msgs []Message) error {
	if err := validateMessages(msgs); err != nil {
		return err
	}
	if len(msgs) == 1 {
		if err := p.cmd(ctx, p.client, msgs[0]).Err(); err != nil {
			return p.publishError(msgs[0], err)
		}
		return nil
	}
	cmds, err := p.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, m := range msgs {
			p.cmd(ctx, pipe, m)
		}
		return nil
	})
	if err != nil {
		for i, c := range cmds {
			if c.Err() != nil {
				return p.publishError(msgs[i], c.Err())
			}
		}
		return p.publishError(msgs[0], err)
	}
	return nil
}

func (p *redisPublisher) publishError(m Message, err error) error {
	if errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return classifyRedis(fmt.Errorf("broker: redis XADD %s to %q: %w", m.ID, p.d.Stream, err))
}

// classifyRedis marks Redis's refusals permanent (WRONGTYPE, ERR ...:
// bad arguments, a key of the wrong type, a script error, authentication)
// and keeps the transient ones retryable (LOADING, BUSY, TRYAGAIN,
// MASTERDOWN, READONLY during a failover, OOM until memory frees up).
func classifyRedis(err error) error {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return err
	}
	msg := rerr.Error()
	for _, transient := range []string{"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM", "CLUSTERDOWN", "MOVED", "ASK"} {
		if strings.HasPrefix(msg, transient) {
			return err
		}
	}
	if strings.Contains(msg, "max") && strings.Contains(msg, "bulk") {
		return permanent(err, ErrTooLarge)
	}
	return permanent(err)
}

func (p *redisPublisher) Close() error {
	err := p.client.Close()
	if errors.Is(err, redis.ErrClosed) {
		return nil
	}
	return err
}
