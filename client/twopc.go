package client

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// TwoPC builds a two-phase commit transaction: every participant URL is
// asked to prepare (vote), then all commit or all abort.
type TwoPC struct {
	c   *Client
	req *v1.SubmitTwoPCRequest
	err error
}

// NewTwoPC starts building a 2PC transaction under gid ("" mints one in the
// SDK, so a submission whose outcome is unknown can be repeated safely).
func (c *Client) NewTwoPC(gid string) *TwoPC {
	if gid == "" {
		gid = newGID()
	}
	return &TwoPC{c: c, req: &v1.SubmitTwoPCRequest{Gid: gid}}
}

// GID returns the transaction's global id.
func (t *TwoPC) GID() string { return t.req.Gid }

// Add appends a participant: prepare, commit and abort are POSTed to url
// with the payload, told apart by the Concord-Op header.
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

// WithOptions sets per-transaction limits (Timeout bounds the voting phase).
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
	return t.c.Wait(ctx, tx.Gid)
}

func (t *TwoPC) submit(ctx context.Context, wait bool) (*Transaction, error) {
	if t.err != nil {
		return nil, t.err
	}
	t.req.Wait = wait
	resp, err := t.c.rpc.SubmitTwoPC(ctx, connect.NewRequest(t.req))
	if err != nil {
		return nil, wrap(err)
	}
	return resp.Msg.Transaction, nil
}

// Decision asks the coordinator what was decided for a 2PC transaction:
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
