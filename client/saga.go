package client

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// Saga builds a saga. Branches run in the order added unless Concurrent
// is set, in which case they run in parallel, each after the branches its
// After names.
type Saga struct {
	c   *Client
	req *v1.SubmitSagaRequest
	err error
}

// NewSaga starts building a saga under gid. With "" the SDK mints a unique
// gid, so that the gid is known before the first submission: if Submit
// fails with an error that leaves the outcome unknown (a timeout, a lost
// connection, ErrUnavailable), calling Submit again is safe; the
// coordinator runs a gid once.
func (c *Client) NewSaga(gid string) *Saga {
	if gid == "" {
		gid = newGID()
	}
	return &Saga{c: c, req: &v1.SubmitSagaRequest{Gid: gid}}
}

// GID returns the saga's global transaction id.
func (s *Saga) GID() string { return s.req.Gid }

// Branch is a saga branch for AddBranch.
type Branch struct {
	ID         string // optional; default "1", "2", ... by position
	Action     string // URL doing the work
	Compensate string // URL undoing it
	Payload    any    // []byte/string sent verbatim; other values as JSON
	After      []string
}

// Add appends a branch with an action URL, a compensation URL and a payload.
func (s *Saga) Add(action, compensate string, payload any) *Saga {
	return s.AddBranch(Branch{Action: action, Compensate: compensate, Payload: payload})
}

// AddBranch appends a branch with every field given.
func (s *Saga) AddBranch(b Branch) *Saga {
	p, err := encodePayload(b.Payload)
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("%w: branch %d payload: %v", ErrInvalid, len(s.req.Branches)+1, err)
	}
	s.req.Branches = append(s.req.Branches, &v1.SagaBranch{Id: b.ID, Action: b.Action, Compensate: b.Compensate, Payload: p, After: b.After})
	return s
}

// Concurrent runs the branches in parallel, ordered only by their After.
func (s *Saga) Concurrent() *Saga { s.req.Concurrent = true; return s }

// WithOptions sets per-transaction limits.
func (s *Saga) WithOptions(o Options) *Saga { s.req.Options = o.proto(); return s }

// Submit returns once the coordinator has durably accepted the saga; it
// then runs to completion even if this process dies.
func (s *Saga) Submit(ctx context.Context) (*Transaction, error) {
	return s.submit(ctx, false)
}

// SubmitAndWait submits and waits for the final outcome (succeeded,
// aborted, or stuck).
func (s *Saga) SubmitAndWait(ctx context.Context) (*Transaction, error) {
	t, err := s.submit(ctx, true)
	if err != nil || Settled(t) {
		return t, err
	}
	return s.c.Wait(ctx, t.GID)
}

func (s *Saga) submit(ctx context.Context, wait bool) (*Transaction, error) {
	if s.err != nil {
		return nil, s.err
	}
	s.req.Wait = wait
	resp, err := s.c.rpc.SubmitSaga(ctx, connect.NewRequest(s.req))
	if err != nil {
		return nil, wrap(err)
	}
	return fromProto(resp.Msg.Transaction), nil
}
