package client

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// WithPropagator sets how the caller's trace context (the span in the
// ctx of each call) goes out on requests to the coordinator and to TCC
// Try URLs, so that the transaction and its branch calls join the
// caller's trace. The default is OpenTelemetry's global propagator,
// looked up on every call: a no-op until the program sets one, e.g.
//
//	otel.SetTextMapPropagator(propagation.TraceContext{})
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.propagator = p }
}

// propagator returns the propagator to use now.
func (o *options) propagatorNow() propagation.TextMapPropagator {
	if o.propagator != nil {
		return o.propagator
	}
	return otel.GetTextMapPropagator()
}

// traceInterceptor writes the trace context of each call's ctx into the
// request's headers (HTTP headers for Connect, metadata for gRPC).
type traceInterceptor struct{ o *options }

func (t traceInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		t.o.propagatorNow().Inject(ctx, propagation.HeaderCarrier(req.Header()))
		return next(ctx, req)
	}
}

func (t traceInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		t.o.propagatorNow().Inject(ctx, propagation.HeaderCarrier(conn.RequestHeader()))
		return conn
	}
}

func (t traceInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// inject writes ctx's trace context into h.
func (c *Client) inject(ctx context.Context, h http.Header) {
	c.opts.propagatorNow().Inject(ctx, propagation.HeaderCarrier(h))
}
