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
func GRPCHandler(procedure string, fn HandlerFunc) (string, http.Handler) {
	h := connect.NewUnaryHandler(procedure, func(ctx context.Context, req *connect.Request[v1.BranchRequest]) (*connect.Response[v1.BranchResponse], error) {
		m := req.Msg
		b := Branch{GID: m.Gid, BranchID: m.BranchId, Op: Op(m.Op), Mode: m.Mode}
		if b.GID == "" || b.BranchID == "" || !b.Op.Valid() {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("participant: request needs gid, branch_id and a known op"))
		}
		err := fn(ctx, b, m.Payload)
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
