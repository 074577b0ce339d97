package participant

import (
	"context"
	"errors"
	"net/http"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// GRPCHandler serves fn as a gRPC participant method (also reachable with
// the Connect and gRPC-Web protocols) at procedure, e.g.
// "/shop.Inventory/Reserve"; the coordinator's branch URL is then
// grpc://host:port/shop.Inventory/Reserve. It returns the path to mount
// and the handler. fn's error maps to the gRPC status the coordinator
// reads: nil → OK, ErrRejected → ABORTED (a business no), ErrReadOnly → OK
// with vote "read-only", anything else → INTERNAL (unknown: retried).
//
// Serve it on an HTTP/2 server; without TLS that needs h2c, e.g.
//
//	srv := &http.Server{Handler: mux, Protocols: new(http.Protocols)}
//	srv.Protocols.SetHTTP1(true)
//	srv.Protocols.SetUnencryptedHTTP2(true)
//
// The metadata "concord-peers" (HeaderPeers) fills Branch.Peers; a
// malformed value is INVALID_ARGUMENT. A state query (op "state", from a
// peer running a termination protocol) is answered by the StateFunc given
// with WithStates, in the response metadata "concord-state"; without one
// it is INVALID_ARGUMENT.
func GRPCHandler(procedure string, fn HandlerFunc, opts ...GRPCOption) (string, http.Handler) {
	var o grpcOptions
	for _, opt := range opts {
		opt(&o)
	}
	h := connect.NewUnaryHandler(procedure, func(ctx context.Context, req *connect.Request[v1.BranchRequest]) (*connect.Response[v1.BranchResponse], error) {
		m := req.Msg
		b := Branch{GID: m.Gid, BranchID: m.BranchId, Op: Op(m.Op), Mode: m.Mode}
		if b.GID == "" || b.BranchID == "" || !b.Op.Valid() {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("participant: request needs gid, branch_id and a known op"))
		}
		peers, err := ParsePeers(req.Header().Get(HeaderPeers))
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		b.Peers = peers
		if b.Op == OpState {
			if o.states == nil {
				return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("participant: this participant answers no state queries"))
			}
			st, err := o.states(ctx, b)
			if err != nil {
				if errors.Is(err, ErrInvalidBranch) {
					return nil, connect.NewError(connect.CodeInvalidArgument, err)
				}
				return nil, connect.NewError(connect.CodeInternal, err)
			}
			resp := connect.NewResponse(&v1.BranchResponse{})
			resp.Header().Set(HeaderState, string(st))
			return resp, nil
		}
		err = fn(ctx, b, m.Payload)
		switch {
		case err == nil:
			return connect.NewResponse(&v1.BranchResponse{}), nil
		case errors.Is(err, ErrReadOnly):
			return connect.NewResponse(&v1.BranchResponse{Vote: "read-only"}), nil
		case errors.Is(err, ErrRejected):
			return nil, connect.NewError(connect.CodeAborted, err)
		}
		return nil, connect.NewError(connect.CodeInternal, err)
	})
	return procedure, h
}

// A GRPCOption configures GRPCHandler.
type GRPCOption func(*grpcOptions)

type grpcOptions struct{ states StateFunc }

// WithStates answers peers' state queries (op "state") with fn, e.g.
// twophase.ThreePC.State.
func WithStates(fn StateFunc) GRPCOption { return func(o *grpcOptions) { o.states = fn } }
