package redisbarrier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/concordtm/concord/participant"
)

// DefaultPrefix starts every barrier key unless WithPrefix says otherwise.
const DefaultPrefix = "concord:barrier"

// maxAttempts bounds how often Do starts over when another client changed
// a watched key between its reads and its EXEC.
const maxAttempts = 32

// ErrContention is wrapped by Do when watched keys kept changing for
// maxAttempts tries. Nothing was applied; a retry is safe.
var ErrContention = errors.New("redisbarrier: watched keys kept changing")

// A Func is the business function of one branch operation. It may read
// business keys through tx (list them in Do's watch keys so that a
// concurrent change makes Do start over), and must queue its writes on
// pipe, not run them through tx: the queued commands are applied in the
// same MULTI/EXEC as the barrier keys. Returning an error applies nothing;
// Do returns that error unchanged. Do may call fn more than once (when a
// watched key changed before EXEC); only the last call's commands apply.
type Func func(ctx context.Context, tx *redis.Tx, pipe redis.Pipeliner) error

// A Barrier keeps one key per branch operation. It is safe for concurrent
// use.
type Barrier struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// An Option configures New.
type Option func(*Barrier)

// WithPrefix sets the prefix of the barrier keys (default DefaultPrefix).
// It must not contain braces.
func WithPrefix(p string) Option { return func(b *Barrier) { b.prefix = p } }

// WithTTL gives every barrier key an expiry (default: none). See the
// package documentation for the retention caveat.
func WithTTL(d time.Duration) Option { return func(b *Barrier) { b.ttl = d } }

// New returns a barrier that keeps its keys in rdb.
func New(rdb redis.UniversalClient, opts ...Option) (*Barrier, error) {
	if rdb == nil {
		return nil, errors.New("redisbarrier: New: nil client")
	}
	b := &Barrier{rdb: rdb, prefix: DefaultPrefix}
	for _, o := range opts {
		o(b)
	}
	if b.prefix == "" || strings.ContainsAny(b.prefix, "{}") {
		return nil, fmt.Errorf("redisbarrier: New: invalid prefix %q", b.prefix)
	}
	if b.ttl < 0 {
		return nil, errors.New("redisbarrier: New: negative TTL")
	}
	return b, nil
}

// Key returns the key that records operation op of branch (gid, branchID):
// PREFIX:LEN:{GID}:BRANCH:OP. The gid is a Redis Cluster hash tag, so every
// barrier key of a transaction lives in one slot; on a cluster, name the
// business keys a branch writes with the same tag ("{GID}") to keep them
// in that slot too. The length prefix keeps the key unambiguous whatever
// the identifiers contain.
func (br *Barrier) Key(gid, branchID string, op participant.Op) string {
	return br.prefix + ":" + strconv.Itoa(len(gid)) + ":{" + gid + "}:" + branchID + ":" + string(op)
}

// Do runs fn for branch operation b, its queued commands applied in one
// MULTI/EXEC with the barrier's keys, unless the barrier decides fn must
// not run. The decision is the one of participant.Barrier:
//
//   - a repeated delivery (the operation's key exists, written by itself):
//     fn does not run; Do returns nil;
//   - a compensate or cancel whose action or try never ran (null
//     compensation): Do writes its key and the forward operation's key
//     (marked with the backward operation), does not run fn, returns nil;
//   - an action or try that arrives after its compensation or cancel
//     (hanging): fn does not run; Do returns an error wrapping
//     participant.ErrRejected;
//   - otherwise fn runs and its commands apply with the barrier key.
//
// Do watches the barrier keys and the given business keys: if another
// client changes one before EXEC, nothing applies and Do starts over
// (reading again, calling fn again). A delivery racing another of the same
// operation, or a compensation racing its action, thus sees the other's
// outcome.
//
// Do returns fn's error unchanged (nothing applied); an error wrapping
// participant.ErrInvalidBranch for a bad identity; ErrContention after
// too many restarts; an error wrapping participant.ErrOutcomeUnknown when
// the connection failed while EXEC may have run; or the error of a queued
// command that failed when it ran (the other commands and the barrier key
// applied: Redis does not roll back). Retrying is safe in every case but
// the last.
func (br *Barrier) Do(ctx context.Context, b participant.Branch, fn Func, watch ...string) error {
	if err := validate(b); err != nil {
		return err
	}
	if fn == nil {
		return errors.New("redisbarrier: Do: nil fn")
	}
	self := br.Key(b.GID, b.BranchID, b.Op)
	forward, backward := b.Op.Undoes()
	keys := append([]string{self}, watch...)
	fwdKey := ""
	if backward {
		fwdKey = br.Key(b.GID, b.BranchID, forward)
		keys = append(keys, fwdKey)
	}
	for range maxAttempts {
		var decided error
		exec := false // MULTI/EXEC was sent: an error may follow applied commands
		err := br.rdb.Watch(ctx, func(tx *redis.Tx) error {
			run, err := br.decide(ctx, tx, b, self, fwdKey)
			if err != nil || !run.write {
				decided = err
				return nil
			}
			var fnErr error
			exec = true
			_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Set(ctx, self, string(b.Op), br.ttl)
				if run.nullComp {
					pipe.Set(ctx, fwdKey, string(b.Op), br.ttl)
					return nil
				}
				fnErr = fn(ctx, tx, pipe)
				return fnErr
			})
			if fnErr != nil {
				decided = fnErr
				return nil
			}
			return err
		}, keys...)
		switch {
		case err == nil:
			return decided
		case errors.Is(err, redis.TxFailedErr):
			continue // a watched key changed: decide again
		case !exec || strings.HasPrefix(err.Error(), "EXECABORT"):
			// Nothing applied: WATCH or a read failed, or EXEC refused a
			// command queued with a syntax error.
			return fmt.Errorf("redisbarrier: %s: %w", describe(b), err)
		case isReply(err):
			// EXEC ran; a queued command failed (Redis does not roll back).
			return fmt.Errorf("redisbarrier: %s: a queued command failed, the others applied: %w", describe(b), err)
		default:
			return fmt.Errorf("redisbarrier: %s: %w: %w", describe(b), participant.ErrOutcomeUnknown, err)
		}
	}
	return fmt.Errorf("redisbarrier: %s: %w after %d tries", describe(b), ErrContention, maxAttempts)
}

// verdict is what decide found: whether to write the barrier key, and if
// so whether this is a null compensation (fn skipped).
type verdict struct{ write, nullComp bool }

// decide reads the watched barrier keys and applies the barrier's rules.
func (br *Barrier) decide(ctx context.Context, tx *redis.Tx, b participant.Branch, self, fwdKey string) (verdict, error) {
	reason, err := tx.Get(ctx, self).Result()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return verdict{}, fmt.Errorf("redisbarrier: %s: read: %w", describe(b), err)
	default: // the key exists
		if participant.Op(reason) == b.Op {
			return verdict{}, nil // repeated delivery (or repeated confirm, compensate, cancel)
		}
		return verdict{}, fmt.Errorf("%w: %s arrived after %s (hanging %s refused by the barrier)",
			participant.ErrRejected, describe(b), reason, b.Op)
	}
	if fwdKey == "" {
		return verdict{write: true}, nil
	}
	n, err := tx.Exists(ctx, fwdKey).Result()
	if err != nil {
		return verdict{}, fmt.Errorf("redisbarrier: %s: read: %w", describe(b), err)
	}
	return verdict{write: true, nullComp: n == 0}, nil
}

// isReply reports whether err is an error reply of the server (as opposed
// to a network or client error).
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.TxFailedErr) && !errors.Is(err, redis.Nil)
}

func validate(b participant.Branch) error {
	switch {
	case b.GID == "":
		return fmt.Errorf("%w: empty gid", participant.ErrInvalidBranch)
	case b.BranchID == "":
		return fmt.Errorf("%w: empty branch id (gid %q)", participant.ErrInvalidBranch, b.GID)
	case !b.Op.Valid() || b.Op == participant.OpState:
		return fmt.Errorf("%w: %q is not a barrier operation", participant.ErrInvalidBranch, b.Op)
	}
	return nil
}

func describe(b participant.Branch) string {
	return fmt.Sprintf("%s of %s/%s", b.Op, b.GID, b.BranchID)
}
