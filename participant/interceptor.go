package participant

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// UnaryServerInterceptor is a grpc-go interceptor for an existing
// service's own methods, called by branch URLs
// grpc://host:port/pkg.Service/Method?message=base64 (the branch payload
// is the method's request message; see client.GRPCMessage). A call with
// the coordinator's metadata (concord-gid, concord-branch, concord-op,
// concord-mode, concord-peers) gets its Branch in the context
// (FromContext); others pass through untouched unless RequireBranch.
// The method answers as the coordinator reads it: OK is success, ABORTED
// (status.Error(codes.Aborted, reason)) a business no, anything else an
// unknown outcome that is retried. A 2PC prepare votes read-only with
// grpc.SetHeader(ctx, metadata.Pairs("concord-vote", "read-only")).
//
// With WithBarrier, the method runs inside the barrier's transaction
// (TxFromContext) that commits when it returns no error; a repeated
// operation or a null compensation is answered ALREADY_EXISTS with the
// metadata concord-outcome: done (the coordinator takes it as success)
// without calling the method; a hanging action is ABORTED.
func UnaryServerInterceptor(opts ...MiddlewareOption) grpc.UnaryServerInterceptor {
	o := newMiddlewareOptions(opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		get := func(k string) string {
			if v := md.Get(strings.ToLower(k)); len(v) > 0 {
				return v[0]
			}
			return ""
		}
		if get(HeaderGID) == "" && !o.required {
			return handler(ctx, req)
		}
		b := Branch{GID: get(HeaderGID), BranchID: get(HeaderBranch), Op: Op(get(HeaderOp)), Mode: get(HeaderMode)}
		if b.GID == "" || b.BranchID == "" || !b.Op.Valid() {
			return nil, status.Error(codes.InvalidArgument, "participant: call needs concord-gid, concord-branch and a known concord-op")
		}
		peers, err := ParsePeers(get(HeaderPeers))
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		b.Peers = peers
		ctx = NewContext(ctx, b)
		if o.barrier == nil {
			return handler(ctx, req)
		}
		var resp any
		ran := false
		err = o.barrier.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
			ran = true
			var herr error
			resp, herr = handler(context.WithValue(ctx, txKey{}, tx), req)
			return herr
		})
		switch {
		case err == nil && !ran:
			grpc.SetHeader(ctx, metadata.Pairs(strings.ToLower(HeaderOutcome), "done"))
			return nil, status.Error(codes.AlreadyExists, "participant: operation already done (or a null compensation)")
		case err == nil:
			return resp, nil
		case errors.Is(err, ErrRejected):
			return nil, status.Error(codes.Aborted, err.Error())
		case ran:
			if _, ok := status.FromError(err); ok {
				return nil, err // the method's own status (or a commit error, unknown)
			}
			return nil, status.Error(codes.Internal, err.Error())
		case errors.Is(err, ErrInvalidBranch):
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, status.Error(codes.Unavailable, err.Error())
	}
}
