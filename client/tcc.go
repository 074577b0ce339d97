package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/participant"
)

// TCC is an open TCC transaction, as seen by its initiator or by a branch
// that registers sub-branches (nested TCC).
type TCC struct {
	c   *Client
	GID string
	// begin, for the initiator, opens the transaction with the first
	// registration (one round trip and one durable write fewer than a
	// separate BeginTCC). Nil for a nested TCC bound to a request.
	begin      *v1.TransactionOptions
	registered bool
}

// ErrTryRejected is returned by CallBranch when a Try said no (HTTP 409).
var ErrTryRejected = errors.New("concord: try rejected")

// ErrTryUnknown is returned by CallBranch when a Try's outcome is unknown
// (timeout, 5xx, connection error). The caller should roll back: the
// coordinator's cancel undoes whatever the Try may have done.
var ErrTryUnknown = errors.New("concord: try outcome unknown")

// RunTCC opens a TCC transaction under gid ("" mints one), runs body, and
// then commits (body returned nil) or rolls back (body returned an error),
// waiting for the final outcome. The returned error is body's error, if
// any, else the coordinator's.
//
// The transaction is opened on the coordinator together with the first
// branch registration; with no branch registered, RunTCC opens it just
// before ending it.
func (c *Client) RunTCC(ctx context.Context, gid string, o Options, body func(ctx context.Context, t *TCC) error) (*Transaction, error) {
	if gid == "" {
		gid = newGID()
	}
	begin := o.proto()
	if begin == nil {
		begin = &v1.TransactionOptions{}
	}
	t := &TCC{c: c, GID: gid, begin: begin}
	berr := body(ctx, t)
	if !t.registered {
		if _, err := c.rpc.BeginTCC(ctx, connect.NewRequest(&v1.BeginTCCRequest{Gid: gid, Options: o.proto()})); err != nil {
			return nil, errors.Join(berr, wrap(err))
		}
	}
	if berr != nil {
		tx, err := t.end(ctx, false)
		if err != nil {
			return tx, errors.Join(berr, err)
		}
		return tx, berr
	}
	return t.end(ctx, true)
}

// TCCFromRequest binds to the TCC transaction of an incoming Try request,
// so a branch can register sub-branches under the same gid.
func (c *Client) TCCFromRequest(r *http.Request) (*TCC, error) {
	b, err := participant.FromRequest(r)
	if err != nil {
		return nil, err
	}
	return &TCC{c: c, GID: b.GID}, nil
}

func (t *TCC) end(ctx context.Context, commit bool) (*Transaction, error) {
	req := connect.NewRequest(&v1.EndTCCRequest{Gid: t.GID, Wait: true})
	var resp *connect.Response[v1.SubmitResponse]
	var err error
	if commit {
		resp, err = t.c.rpc.CommitTCC(ctx, req)
	} else {
		resp, err = t.c.rpc.RollbackTCC(ctx, req)
	}
	if err != nil {
		return nil, wrap(err)
	}
	tx := fromProto(resp.Msg.Transaction)
	if !Settled(tx) {
		return t.c.Wait(ctx, t.GID)
	}
	return tx, nil
}

// CallBranch registers a branch (durably, before anything else) and then
// calls its Try URL with the payload. It returns the Try's response body,
// or an error wrapping ErrTryRejected or ErrTryUnknown.
func (t *TCC) CallBranch(ctx context.Context, branchID string, payload any, try, confirm, cancel string) ([]byte, error) {
	p, err := encodePayload(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrInvalid, err)
	}
	_, err = t.c.rpc.RegisterBranch(ctx, connect.NewRequest(&v1.RegisterBranchRequest{
		Gid: t.GID, BranchId: branchID, Confirm: confirm, Cancel: cancel, Payload: p,
		Begin: t.begin != nil, Options: t.begin,
	}))
	if err != nil {
		return nil, wrap(err)
	}
	t.registered = true
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, try, bytes.NewReader([]byte(p)))
	if err != nil {
		return nil, fmt.Errorf("%w: try URL: %v", ErrInvalid, err)
	}
	req.Header.Set("Content-Type", "application/json")
	t.c.inject(ctx, req.Header)
	participant.Branch{GID: t.GID, BranchID: branchID, Op: participant.OpTry, Mode: "tcc"}.SetHeaders(req.Header)
	resp, err := t.c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: branch %s: %v", ErrTryUnknown, branchID, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, participant.MaxBody))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return body, nil
	case resp.StatusCode == http.StatusConflict:
		return body, fmt.Errorf("%w: branch %s: %s", ErrTryRejected, branchID, bytes.TrimSpace(body))
	default:
		return body, fmt.Errorf("%w: branch %s: HTTP %d: %s", ErrTryUnknown, branchID, resp.StatusCode, bytes.TrimSpace(body))
	}
}
