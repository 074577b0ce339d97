// Package client is the Go SDK for programs that start global transactions
// on a Concord coordinator: sagas, TCC transactions, and the operator
// calls (get, list, retry, abort).
//
//	c := client.New("http://127.0.0.1:7070")
//	tx, err := c.NewSaga("").
//		Add("http://order/create", "http://order/cancel", order).
//		Add("http://stock/reserve", "http://stock/release", item).
//		SubmitAndWait(ctx)
//
// Participants use package participant to serve branch calls and its
// Barrier to make them idempotent and safe against reordering.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/propagation"

	v1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/gen/concord/v1/concordv1connect"
)

// Statuses a Transaction can have.
const (
	StatusRunning      = "running"
	StatusConfirming   = "confirming"
	StatusCompensating = "compensating"
	StatusCancelling   = "cancelling"
	StatusCommitting   = "committing" // 2pc, 3pc: commit decided, the last phase under way
	// 3pc: every branch said it can commit; pre-commits under way.
	StatusPreCommitting = "precommitting"
	StatusPrepared      = "prepared"   // msg: a half message, waiting for the producer's local transaction
	StatusDelivering    = "delivering" // msg: the producer committed; deliveries under way
	StatusSucceeded     = "succeeded"
	StatusAborted       = "aborted"
	StatusStuck         = "stuck"
)

// Statuses lists every status a Transaction can have, in the coordinator's
// order of its life cycle.
var Statuses = []string{StatusRunning, StatusPrepared, StatusPreCommitting, StatusConfirming, StatusCompensating,
	StatusCancelling, StatusCommitting, StatusDelivering, StatusSucceeded, StatusAborted, StatusStuck}

// Final reports whether status is one no further work follows.
func Final(status string) bool { return status == StatusSucceeded || status == StatusAborted }

// Errors, tested with errors.Is. Each wraps the server's message.
var (
	ErrInvalid      = errors.New("concord: invalid request")
	ErrNotFound     = errors.New("concord: not found") // no such transaction or subscription
	ErrConflict     = errors.New("concord: conflict with an existing transaction")
	ErrPrecondition = errors.New("concord: not allowed in the current state") // of the transaction, or a topic without subscribers
	ErrUnavailable  = errors.New("concord: coordinator unavailable; retry")
	ErrUnauthorized = errors.New("concord: unauthenticated")
)

// Client talks to one coordinator. It is safe for concurrent use.
type Client struct {
	rpc     concordv1connect.CoordinatorServiceClient
	http    *http.Client // calls to participants (TCC try)
	token   string
	baseURL string
	opts    *options
}

// Option configures a Client.
type Option func(*options)

type options struct {
	http    *http.Client
	branch  *http.Client
	token   string
	grpc    bool
	json    bool
	timeout time.Duration
	// propagator injects the caller's trace context; nil: otel's
	// global one (see WithPropagator).
	propagator propagation.TextMapPropagator
}

// WithHTTPClient sets the HTTP client (for TLS settings, proxies, tracing).
func WithHTTPClient(h *http.Client) Option { return func(o *options) { o.http = h } }

// WithParticipantHTTPClient sets the HTTP client used to call
// participants' Try URLs (default: WithHTTPClient's client, or a plain
// HTTP/1.1 and HTTP/2-over-TLS client when WithGRPC is used).
func WithParticipantHTTPClient(h *http.Client) Option { return func(o *options) { o.branch = h } }

// WithToken sends "Authorization: Bearer <token>" on every call.
func WithToken(tok string) Option { return func(o *options) { o.token = tok } }

// WithGRPC uses the gRPC protocol instead of Connect.
func WithGRPC() Option { return func(o *options) { o.grpc = true } }

// WithJSON uses JSON instead of binary protobuf on the wire.
func WithJSON() Option { return func(o *options) { o.json = true } }

// New returns a client for the coordinator at baseURL
// (e.g. "http://127.0.0.1:7070").
func New(baseURL string, opts ...Option) *Client {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.branch == nil && o.http != nil {
		o.branch = o.http
	}
	if o.http == nil {
		tr := newTransport()
		if o.branch == nil {
			o.branch = &http.Client{Transport: newTransport()}
		}
		if o.grpc {
			// gRPC needs HTTP/2, also without TLS (h2c); participants
			// keep the ordinary transport above.
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
			tr.Protocols.SetHTTP2(true)
		}
		o.http = &http.Client{Transport: tr}
	}
	copts := []connect.ClientOption{connect.WithInterceptors(traceInterceptor{&o})}
	if o.grpc {
		copts = append(copts, connect.WithGRPC())
	}
	if o.json {
		copts = append(copts, connect.WithProtoJSON())
	}
	if o.token != "" {
		copts = append(copts, connect.WithInterceptors(tokenInterceptor(o.token)))
	}
	return &Client{
		rpc:     concordv1connect.NewCoordinatorServiceClient(o.http, baseURL, copts...),
		http:    o.branch,
		token:   o.token,
		baseURL: baseURL,
		opts:    &o,
	}
}

// newGID mints a gid on the client side (same shape as the server's):
// time-ordered, with 64 random bits.
func newGID() string {
	var b [8]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405.000") + "-" + hex.EncodeToString(b[:])
}

func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
}

func tokenInterceptor(tok string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+tok)
			return next(ctx, req)
		}
	}
}

// wrap maps API errors to the package's sentinels.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument:
		sentinel = ErrInvalid
	case connect.CodeNotFound:
		sentinel = ErrNotFound
	case connect.CodeAlreadyExists:
		sentinel = ErrConflict
	case connect.CodeFailedPrecondition:
		sentinel = ErrPrecondition
	case connect.CodeUnavailable:
		sentinel = ErrUnavailable
	case connect.CodeUnauthenticated:
		sentinel = ErrUnauthorized
	default:
		return err
	}
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	return fmt.Errorf("%w: %s", sentinel, msg)
}

// NewGID asks the coordinator for a fresh global transaction id.
func (c *Client) NewGID(ctx context.Context) (string, error) {
	resp, err := c.rpc.NewGID(ctx, connect.NewRequest(&v1.NewGIDRequest{}))
	if err != nil {
		return "", wrap(err)
	}
	return resp.Msg.Gid, nil
}

// Get returns a transaction.
func (c *Client) Get(ctx context.Context, gid string) (*Transaction, error) {
	resp, err := c.rpc.GetTransaction(ctx, connect.NewRequest(&v1.GetTransactionRequest{Gid: gid}))
	if err != nil {
		return nil, wrap(err)
	}
	return fromProto(resp.Msg.Transaction), nil
}

// Wait blocks until the transaction is final or stuck (or the server's
// longest wait passes, or ctx ends) and returns it.
func (c *Client) Wait(ctx context.Context, gid string) (*Transaction, error) {
	for {
		resp, err := c.rpc.GetTransaction(ctx, connect.NewRequest(&v1.GetTransactionRequest{Gid: gid, Wait: true}))
		if err != nil {
			return nil, wrap(err)
		}
		t := fromProto(resp.Msg.Transaction)
		if Settled(t) || ctx.Err() != nil {
			return t, ctx.Err()
		}
	}
}

// Settled reports whether t is final or stuck (needs an operator).
func Settled(t *Transaction) bool {
	if t == nil {
		return false
	}
	switch t.Status {
	case StatusSucceeded, StatusAborted, StatusStuck:
		return true
	}
	return false
}

// ListOptions filters List. Zero values mean no filter.
type ListOptions struct {
	Status, Mode, GIDPrefix string
	Limit                   int
	PageToken               string
}

// List returns transactions, newest first, and the token of the next page
// ("" when there is none).
func (c *Client) List(ctx context.Context, o ListOptions) ([]*Transaction, string, error) {
	resp, err := c.rpc.ListTransactions(ctx, connect.NewRequest(&v1.ListTransactionsRequest{
		Status: o.Status, Mode: o.Mode, GidPrefix: o.GIDPrefix, Limit: int32(o.Limit), PageToken: o.PageToken,
	}))
	if err != nil {
		return nil, "", wrap(err)
	}
	out := make([]*Transaction, len(resp.Msg.Transactions))
	for i, t := range resp.Msg.Transactions {
		out[i] = fromProto(t)
	}
	return out, resp.Msg.NextPageToken, nil
}

// Retry gives a stuck or retrying transaction a fresh retry budget.
func (c *Client) Retry(ctx context.Context, gid string) (*Transaction, error) {
	resp, err := c.rpc.RetryTransaction(ctx, connect.NewRequest(&v1.RetryTransactionRequest{Gid: gid}))
	if err != nil {
		return nil, wrap(err)
	}
	return fromProto(resp.Msg.Transaction), nil
}

// Abort rolls back a transaction that has not decided yet.
func (c *Client) Abort(ctx context.Context, gid, reason string) (*Transaction, error) {
	resp, err := c.rpc.AbortTransaction(ctx, connect.NewRequest(&v1.AbortTransactionRequest{Gid: gid, Reason: reason}))
	if err != nil {
		return nil, wrap(err)
	}
	return fromProto(resp.Msg.Transaction), nil
}
