// Package server exposes the coordinator over one API schema: gRPC,
// gRPC-Web and Connect (HTTP/JSON) on one port, with validation, limits,
// bearer-token authentication and error mapping.
package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/gen/concord/v1/concordv1connect"
	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/destination"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/topic"
)

// Service implements the CoordinatorService API.
type Service struct {
	coord  *coordinator.Coordinator
	limits Limits
	audit  *slog.Logger // operator actions; nil: none (see WithAuditLog)
	health *health
	dest   *destination.Policy // nil: any destination (see WithDestinations)
}

var _ concordv1connect.CoordinatorServiceHandler = (*Service)(nil)

// NewService wraps a coordinator.
func NewService(c *coordinator.Coordinator, l Limits) *Service {
	s := &Service{coord: c, limits: l.withDefaults()}
	s.health = &health{svc: s}
	return s
}

// WithDestinations makes the service refuse, at submission, every branch,
// check-back, message and subscription URL the policy refuses (an
// invalid_argument error naming the URL's host and the reason).
func (s *Service) WithDestinations(p *destination.Policy) *Service {
	s.dest = p
	return s
}

// Drain makes /readyz and the gRPC health service answer "not serving",
// so that load balancers stop sending work before the server stops.
func (s *Service) Drain() { s.health.draining.Store(true) }

func invalid(err error) error { return connect.NewError(connect.CodeInvalidArgument, err) }

// apiError maps coordinator and protocol errors to API codes.
func apiError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, coordinator.ErrInvalid), errors.Is(err, protocol.ErrInvalidEvent), errors.Is(err, topic.ErrInvalid):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, coordinator.ErrNotFound), errors.Is(err, topic.ErrNotSubscribed):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, coordinator.ErrGIDConflict), errors.Is(err, protocol.ErrConflict):
		return connect.NewError(connect.CodeAlreadyExists, err)
	case errors.Is(err, protocol.ErrInvalidTransition), errors.Is(err, topic.ErrNoSubscribers), errors.Is(err, topic.ErrUnsupported):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, coordinator.ErrUnavailable), errors.Is(err, coordinator.ErrClosed), errors.Is(err, coordinator.ErrMoved),
		errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrConflict):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// wait blocks until gid is final or stuck, bounded by MaxWait; on timeout
// it returns the current state, which is not an error.
func (s *Service) wait(ctx context.Context, gid string) (*v1.Transaction, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.MaxWait)
	defer cancel()
	t, err := s.coord.Wait(ctx, gid)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, apiError(err)
	}
	return toProto(t), nil
}

func (s *Service) NewGID(context.Context, *connect.Request[v1.NewGIDRequest]) (*connect.Response[v1.NewGIDResponse], error) {
	return connect.NewResponse(&v1.NewGIDResponse{Gid: coordinator.NewGID()}), nil
}

func (s *Service) SubmitSaga(ctx context.Context, req *connect.Request[v1.SubmitSagaRequest]) (*connect.Response[v1.SubmitResponse], error) {
	r := req.Msg
	if err := s.checkSaga(r); err != nil {
		return nil, invalid(err)
	}
	spec := coordinator.SagaSpec{GID: r.Gid, Concurrent: r.Concurrent, Options: optionsFromProto(r.Options)}
	for _, b := range r.Branches {
		spec.Branches = append(spec.Branches, protocol.Branch{
			ID: b.Id, ForwardURL: b.Action, BackwardURL: b.Compensate, Payload: []byte(b.Payload), After: b.After,
		})
	}
	t, err := s.coord.SubmitSaga(ctx, spec)
	if err != nil {
		return nil, apiError(err)
	}
	return s.respond(ctx, t, r.Wait)
}

func (s *Service) SubmitTwoPC(ctx context.Context, req *connect.Request[v1.SubmitTwoPCRequest]) (*connect.Response[v1.SubmitResponse], error) {
	r := req.Msg
	if err := s.checkCommit("2pc", r.Gid, r.Branches, r.Options); err != nil {
		return nil, invalid(err)
	}
	t, err := s.coord.SubmitTwoPC(ctx, commitSpec(r.Gid, r.Branches, r.Options))
	if err != nil {
		return nil, apiError(err)
	}
	return s.respond(ctx, t, r.Wait)
}

func (s *Service) SubmitThreePC(ctx context.Context, req *connect.Request[v1.SubmitThreePCRequest]) (*connect.Response[v1.SubmitResponse], error) {
	r := req.Msg
	if err := s.checkCommit("3pc", r.Gid, r.Branches, r.Options); err != nil {
		return nil, invalid(err)
	}
	t, err := s.coord.SubmitThreePC(ctx, coordinator.ThreePCSpec(commitSpec(r.Gid, r.Branches, r.Options)))
	if err != nil {
		return nil, apiError(err)
	}
	return s.respond(ctx, t, r.Wait)
}

// commitSpec converts a 2PC or 3PC submission: one URL per branch.
func commitSpec(gid string, branches []*v1.TwoPCBranch, o *v1.TransactionOptions) coordinator.TwoPCSpec {
	spec := coordinator.TwoPCSpec{GID: gid, Options: optionsFromProto(o)}
	for _, b := range branches {
		spec.Branches = append(spec.Branches, protocol.Branch{ID: b.Id, ForwardURL: b.Url, Payload: []byte(b.Payload)})
	}
	return spec
}

func (s *Service) GetDecision(ctx context.Context, req *connect.Request[v1.GetDecisionRequest]) (*connect.Response[v1.GetDecisionResponse], error) {
	if err := checkID("gid", req.Msg.Gid, true); err != nil {
		return nil, invalid(err)
	}
	d, err := s.coord.Decision(ctx, req.Msg.Gid)
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&v1.GetDecisionResponse{Decision: string(d)}), nil
}

func (s *Service) respond(ctx context.Context, t protocol.Txn, wait bool) (*connect.Response[v1.SubmitResponse], error) {
	if !wait {
		return connect.NewResponse(&v1.SubmitResponse{Transaction: toProto(t)}), nil
	}
	pt, err := s.wait(ctx, t.GID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&v1.SubmitResponse{Transaction: pt}), nil
}

func (s *Service) BeginTCC(ctx context.Context, req *connect.Request[v1.BeginTCCRequest]) (*connect.Response[v1.SubmitResponse], error) {
	r := req.Msg
	if err := checkID("gid", r.Gid, false); err != nil {
		return nil, invalid(err)
	}
	if err := checkOptions(r.Options); err != nil {
		return nil, invalid(err)
	}
	t, err := s.coord.BeginTCC(ctx, r.Gid, optionsFromProto(r.Options))
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&v1.SubmitResponse{Transaction: toProto(t)}), nil
}

func (s *Service) RegisterBranch(ctx context.Context, req *connect.Request[v1.RegisterBranchRequest]) (*connect.Response[v1.RegisterBranchResponse], error) {
	r := req.Msg
	if err := s.checkRegister(r); err != nil {
		return nil, invalid(err)
	}
	if err := checkOptions(r.Options); err != nil {
		return nil, invalid(err)
	}
	var begin *protocol.Options
	if r.Begin {
		o := optionsFromProto(r.Options)
		begin = &o
	}
	t, err := s.coord.RegisterBranch(ctx, r.Gid, protocol.Branch{
		ID: r.BranchId, ForwardURL: r.Confirm, BackwardURL: r.Cancel, Payload: []byte(r.Payload),
	}, begin, s.limits.MaxBranches)
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&v1.RegisterBranchResponse{Transaction: toProto(t)}), nil
}

func (s *Service) CommitTCC(ctx context.Context, req *connect.Request[v1.EndTCCRequest]) (*connect.Response[v1.SubmitResponse], error) {
	if err := checkID("gid", req.Msg.Gid, true); err != nil {
		return nil, invalid(err)
	}
	t, err := s.coord.CommitTCC(ctx, req.Msg.Gid)
	if err != nil {
		return nil, apiError(err)
	}
	return s.respond(ctx, t, req.Msg.Wait)
}

func (s *Service) RollbackTCC(ctx context.Context, req *connect.Request[v1.EndTCCRequest]) (*connect.Response[v1.SubmitResponse], error) {
	if err := checkID("gid", req.Msg.Gid, true); err != nil {
		return nil, invalid(err)
	}
	t, err := s.coord.RollbackTCC(ctx, req.Msg.Gid, "")
	if err != nil {
		return nil, apiError(err)
	}
	return s.respond(ctx, t, req.Msg.Wait)
}

func (s *Service) GetTransaction(ctx context.Context, req *connect.Request[v1.GetTransactionRequest]) (*connect.Response[v1.GetTransactionResponse], error) {
	r := req.Msg
	if err := checkID("gid", r.Gid, true); err != nil {
		return nil, invalid(err)
	}
	if r.WaitTimeoutMs < 0 {
		return nil, invalid(fmt.Errorf("wait_timeout_ms = %d: must not be negative", r.WaitTimeoutMs))
	}
	if r.Wait {
		if r.WaitTimeoutMs > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, msDuration(r.WaitTimeoutMs))
			defer cancel()
		}
		pt, err := s.wait(ctx, r.Gid)
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&v1.GetTransactionResponse{Transaction: pt}), nil
	}
	t, err := s.coord.Get(ctx, r.Gid)
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&v1.GetTransactionResponse{Transaction: toProto(t)}), nil
}

var knownStatuses = map[string]bool{"running": true, "confirming": true, "compensating": true, "cancelling": true, "committing": true, "precommitting": true, "prepared": true, "delivering": true, "succeeded": true, "aborted": true, "stuck": true}

func (s *Service) ListTransactions(ctx context.Context, req *connect.Request[v1.ListTransactionsRequest]) (*connect.Response[v1.ListTransactionsResponse], error) {
	r := req.Msg
	if r.Status != "" && !knownStatuses[r.Status] {
		return nil, invalid(fmt.Errorf("status %q is not one of running, confirming, compensating, cancelling, committing, precommitting, prepared, delivering, succeeded, aborted, stuck", r.Status))
	}
	if r.Mode != "" && r.Mode != "saga" && r.Mode != "tcc" && r.Mode != "2pc" && r.Mode != "3pc" && r.Mode != "msg" {
		return nil, invalid(fmt.Errorf("mode %q is not one of saga, tcc, 2pc, 3pc, msg", r.Mode))
	}
	if r.Limit < 0 || r.Limit > 1000 {
		return nil, invalid(fmt.Errorf("limit = %d: must be between 0 and 1000", r.Limit))
	}
	if err := checkID("gid_prefix", r.GidPrefix, false); err != nil {
		return nil, invalid(err)
	}
	opts := store.ListOptions{Status: r.Status, Mode: r.Mode, GIDPrefix: r.GidPrefix, Limit: int(r.Limit)}
	if opts.Limit == 0 {
		opts.Limit = 50
	}
	if r.PageToken != "" {
		before, gid, err := decodeToken(r.PageToken)
		if err != nil {
			return nil, invalid(err)
		}
		opts.Before, opts.BeforeGID = before, gid
	}
	txns, err := s.coord.List(ctx, opts)
	if err != nil {
		return nil, apiError(err)
	}
	resp := &v1.ListTransactionsResponse{}
	for _, t := range txns {
		resp.Transactions = append(resp.Transactions, toProto(t))
	}
	if len(txns) == opts.Limit {
		last := txns[len(txns)-1]
		resp.NextPageToken = encodeToken(last.CreatedAt, last.GID)
	}
	return connect.NewResponse(resp), nil
}

func encodeToken(createdAt int64, gid string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(createdAt, 10) + "/" + gid))
}

func decodeToken(tok string) (int64, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", fmt.Errorf("page_token is malformed")
	}
	ts, gid, ok := strings.Cut(string(raw), "/")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || n <= 0 || checkID("page_token gid", gid, true) != nil {
		return 0, "", fmt.Errorf("page_token is malformed")
	}
	return n, gid, nil
}

func (s *Service) RetryTransaction(ctx context.Context, req *connect.Request[v1.RetryTransactionRequest]) (*connect.Response[v1.RetryTransactionResponse], error) {
	if err := checkID("gid", req.Msg.Gid, true); err != nil {
		return nil, invalid(err)
	}
	t, err := s.coord.Retry(ctx, req.Msg.Gid)
	s.audited(req.Peer(), "retry", req.Msg.Gid, apiError(err))
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&v1.RetryTransactionResponse{Transaction: toProto(t)}), nil
}

func (s *Service) AbortTransaction(ctx context.Context, req *connect.Request[v1.AbortTransactionRequest]) (*connect.Response[v1.AbortTransactionResponse], error) {
	if err := checkID("gid", req.Msg.Gid, true); err != nil {
		return nil, invalid(err)
	}
	if len(req.Msg.Reason) > 1024 {
		return nil, invalid(fmt.Errorf("reason is %d bytes, at most 1024 allowed", len(req.Msg.Reason)))
	}
	t, err := s.coord.Abort(ctx, req.Msg.Gid, req.Msg.Reason)
	s.audited(req.Peer(), "abort", req.Msg.Gid, apiError(err))
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&v1.AbortTransactionResponse{Transaction: toProto(t)}), nil
}
