package client

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// TwoPC builds a two-phase commit transaction: every participant URL is
// asked to prepare (vote), then all commit or all abort. Built with
// NewThreePC it is a three-phase commit instead: can-commit, pre-commit,
// do-commit (see docs/protocols.md); the builder is the same, because the
// two submissions carry the same fields.
type TwoPC struct {
	c     *Client
	req   *v1.SubmitTwoPCRequest
	err   error
	three bool // submit as 3PC
}

// NewTwoPC starts building a 2PC transaction under gid ("" mints one in the
// SDK, so a submission whose outcome is unknown can be repeated safely).
func (c *Client) NewTwoPC(gid string) *TwoPC {
	if gid == "" {
		gid = newGID()
	}
	return &TwoPC{c: c, req: &v1.SubmitTwoPCRequest{Gid: gid}}
}

// NewThreePC starts building a three-phase commit transaction under gid
// ("" mints one). Each participant URL gets can-commit, pre-commit,
// do-commit or abort, told apart by the Concord-Op header; on the
// participant side, twophase.Store.ThreePCHandler or xa.Handler serve
// them. 3PC trades 2PC's blocking for possible divergence: read
// docs/protocols.md before choosing it.
func (c *Client) NewThreePC(gid string) *TwoPC {
	t := c.NewTwoPC(gid)
	t.three = true
	return t
}

// GID returns the transaction's global id.
func (t *TwoPC) GID() string { return t.req.Gid }

// Add appends a participant: prepare, commit and abort (3PC: can-commit,
// pre-commit, do-commit, abort) are POSTed to url with the payload, told
// apart by the Concord-Op header.
func (t *TwoPC) Add(url string, payload any) *TwoPC {
	return t.AddBranch("", url, payload)
}

// AddBranch appends a participant with an explicit branch id.
func (t *TwoPC) AddBranch(id, url string, payload any) *TwoPC {
	p, err := encodePayload(payload)
	if err != nil && t.err == nil {
		t.err = fmt.Errorf("%w: branch %d payload: %v", ErrInvalid, len(t.req.Branches)+1, err)
	}
	t.req.Branches = append(t.req.Branches, &v1.TwoPCBranch{Id: id, Url: url, Payload: p})
	return t
}

// WithOptions sets per-transaction limits (Timeout bounds the voting phase;
// in 3PC, afresh, the pre-commit phase too).
func (t *TwoPC) WithOptions(o Options) *TwoPC { t.req.Options = o.proto(); return t }

// Submit returns once the coordinator has durably accepted the transaction.
func (t *TwoPC) Submit(ctx context.Context) (*Transaction, error) { return t.submit(ctx, false) }

// SubmitAndWait submits and waits for the outcome: succeeded (committed),
// aborted, or stuck (a commit keeps failing; an operator must look).
func (t *TwoPC) SubmitAndWait(ctx context.Context) (*Transaction, error) {
	tx, err := t.submit(ctx, true)
	if err != nil || Settled(tx) {
		return tx, err
	}
	return t.c.Wait(ctx, tx.GID)
}

func (t *TwoPC) submit(ctx context.Context, wait bool) (*Transaction, error) {
	if t.err != nil {
		return nil, t.err
	}
	t.req.Wait = wait
	var resp *connect.Response[v1.SubmitResponse]
	var err error
	if t.three {
		r := &v1.SubmitThreePCRequest{Gid: t.req.Gid, Branches: t.req.Branches, Options: t.req.Options, Wait: wait}
		resp, err = t.c.rpc.SubmitThreePC(ctx, connect.NewRequest(r))
	} else {
		resp, err = t.c.rpc.SubmitTwoPC(ctx, connect.NewRequest(t.req))
	}
	if err != nil {
		return nil, wrap(err)
	}
	return fromProto(resp.Msg.Transaction), nil
}

// Decision asks the coordinator what was decided for a 2PC or 3PC
// transaction (a 3PC in its pre-commit phase is "pending"):
// "commit", "abort" or "pending". A participant that prepared and waited
// too long for phase 2 asks instead of guessing. A gid the coordinator does
// not know was never decided to commit: the answer is "abort".
func (c *Client) Decision(ctx context.Context, gid string) (string, error) {
	resp, err := c.rpc.GetDecision(ctx, connect.NewRequest(&v1.GetDecisionRequest{Gid: gid}))
	if err != nil {
		return "", wrap(err)
	}
	return resp.Msg.Decision, nil
}
