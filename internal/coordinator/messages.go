package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/msg"
)

// MessageSpec is a reliable message as submitted. Each destination is a
// branch (fields used: ID, ForwardURL, Payload).
type MessageSpec struct {
	GID          string
	Destinations []protocol.Branch
	// Topics are expanded when the message is accepted into one
	// destination per current subscription (see package topic), with id
	// "topic:subscriber" and Payload as body. The new fields are left out
	// of the spec hash when empty, so messages without topics hash as
	// before.
	Topics  []string `json:",omitempty"`
	Payload []byte   `json:",omitempty"`
	// MaxDestinations bounds the destinations after expansion (0: no
	// bound).
	MaxDestinations int `json:"-"`
	// CheckURL is the producer's check-back endpoint (prepared messages
	// only).
	CheckURL string
	Options  protocol.Options
	// Delay holds every delivery back this long after acceptance.
	Delay time.Duration
}

// PrepareMessage durably holds a message until its producer submits it
// (its local transaction committed) or aborts it. Past the options'
// timeout without either, the coordinator asks the check-back.
func (c *Coordinator) PrepareMessage(ctx context.Context, spec MessageSpec) (protocol.Txn, error) {
	if spec.CheckURL == "" {
		return protocol.Txn{}, fmt.Errorf("%w: a prepared message needs a check-back URL", ErrInvalid)
	}
	return c.createMessage(ctx, spec, true)
}

// SendMessage durably accepts a message whose producer has nothing left
// to commit, and delivers it.
func (c *Coordinator) SendMessage(ctx context.Context, spec MessageSpec) (protocol.Txn, error) {
	if spec.CheckURL != "" {
		return protocol.Txn{}, fmt.Errorf("%w: a check-back URL is for prepared messages", ErrInvalid)
	}
	return c.createMessage(ctx, spec, false)
}

func (c *Coordinator) createMessage(ctx context.Context, spec MessageSpec, prepared bool) (protocol.Txn, error) {
	minted := spec.GID == ""
	if minted {
		spec.GID = NewGID()
	}
	if len(spec.Topics) == 0 || len(spec.Destinations) > 0 {
		if err := nameBranches("message", spec.Destinations); err != nil {
			return protocol.Txn{}, err
		}
	}
	if spec.Delay < 0 {
		return protocol.Txn{}, fmt.Errorf("%w: delay must not be negative", ErrInvalid)
	}
	// The hash covers the message as submitted (topic names, not their
	// subscribers), so that a retry of the same submission is recognised
	// even after the subscriptions changed.
	hash := specHash(struct {
		Prepared bool
		Spec     MessageSpec
	}{prepared, spec})
	dests, err := c.expandTopics(ctx, spec)
	if err != nil {
		// A repeated submission is answered from the message it created,
		// even if its topics have lost their subscribers since.
		if !minted {
			if cur, gerr := c.Get(ctx, spec.GID); gerr == nil {
				return sameOrConflict(cur, protocol.Txn{Mode: protocol.ModeMsg, SpecHash: hash})
			}
		}
		return protocol.Txn{}, err
	}
	branches := make([]protocol.Branch, 0, len(dests)+1)
	if prepared {
		branches = append(branches, protocol.Branch{ID: msg.CheckBranch, ForwardOp: protocol.OpCheck, ForwardURL: spec.CheckURL})
	}
	for _, d := range dests {
		if d.ID == msg.CheckBranch {
			return protocol.Txn{}, fmt.Errorf("%w: destination id %q is reserved", ErrInvalid, msg.CheckBranch)
		}
		d.ForwardOp = protocol.OpDeliver
		branches = append(branches, d)
	}
	t := protocol.Txn{
		GID: spec.GID, Mode: protocol.ModeMsg, Options: withDefaults(spec.Options, c.cfg.Defaults),
		Branches: branches, SpecHash: hash,
	}
	if spec.Delay > 0 {
		t.NotBefore = now() + int64(spec.Delay)
	}
	return c.create(ctx, t, minted)
}

// SubmitMessage is the producer's "my local transaction committed":
// deliver the prepared message.
func (c *Coordinator) SubmitMessage(ctx context.Context, gid string) (protocol.Txn, error) {
	return c.do(ctx, gid, protocol.ModeMsg, protocol.Commit{Now: now()})
}

// AbortMessage is the producer's "my local transaction rolled back": drop
// the prepared message.
func (c *Coordinator) AbortMessage(ctx context.Context, gid, reason string) (protocol.Txn, error) {
	return c.do(ctx, gid, protocol.ModeMsg, protocol.Rollback{Now: now(), Reason: reason})
}
