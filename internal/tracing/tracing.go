// Package tracing turns coordinator events into OpenTelemetry spans: one
// span per transaction, from its durable acceptance to its final status
// (a child of the submitter's span when the API request carried a W3C
// traceparent, see Tracer.Extract), and one child span per branch call, whose W3C trace context (traceparent
// and tracestate) goes to the participant in the call's HTTP headers or
// gRPC metadata, so the participant's own spans join the trace.
//
// Tracing is off unless the standard OTEL_* environment variables turn it
// on (see FromEnv). The coordinator never imports OpenTelemetry: it calls
// the Listener callbacks and the header decorator this package provides.
package tracing

import (
	"context"
	"net/http"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/destination"
	"github.com/concordtm/concord/internal/protocol"
)

// ScopeName is the instrumentation scope of Concord's spans.
const ScopeName = "github.com/concordtm/concord/internal/coordinator"

// maxOpen bounds the transaction spans kept open; past it, new
// transactions get no span of their own (their branch spans are roots).
// Transactions that another instance finishes would otherwise pile up.
const maxOpen = 100_000

// Attribute keys on Concord's spans.
const (
	AttrGID     = attribute.Key("concord.gid")
	AttrMode    = attribute.Key("concord.mode")
	AttrStatus  = attribute.Key("concord.status")
	AttrBranch  = attribute.Key("concord.branch")
	AttrOp      = attribute.Key("concord.op")
	AttrAttempt = attribute.Key("concord.attempt")
	AttrOutcome = attribute.Key("concord.outcome")
	AttrURL     = attribute.Key("url.full")
	// AttrResumed is set on the transaction span of a transaction this
	// coordinator took up again: "restart" or "takeover".
	AttrResumed = attribute.Key("concord.resumed")
)

// Tracer records spans for a coordinator.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator

	mu   sync.Mutex
	open map[string]trace.Span // gid → transaction span
}

// New returns a tracer that creates spans with tp.
func New(tp trace.TracerProvider) *Tracer {
	return &Tracer{
		tracer: tp.Tracer(ScopeName),
		prop:   propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		open:   map[string]trace.Span{},
	}
}

// Listener returns the coordinator callbacks that make the spans.
func (t *Tracer) Listener() coordinator.Listener {
	return coordinator.Listener{
		Started:   t.started,
		Resumed:   t.resumed,
		Ended:     t.ended,
		CallStart: t.callStart,
		Alerted:   t.alerted,
	}
}

// Decorate writes the trace context of ctx into h (traceparent,
// tracestate): give it to coordinator.NewDecoratedCaller.
func (t *Tracer) Decorate(ctx context.Context, h http.Header) {
	t.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract wraps an API handler: the W3C trace context of a request
// (traceparent and tracestate headers, which are also gRPC metadata)
// goes into its context, so that a transaction it submits continues the
// caller's trace.
func (t *Tracer) Extract(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Traceparent") != "" {
			r = r.WithContext(t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		}
		next.ServeHTTP(w, r)
	})
}

// started opens the span of a newly accepted transaction: a child of the
// submitter's span when ctx carries one (see Extract), else a new trace.
func (t *Tracer) started(ctx context.Context, gid string, mode protocol.Mode) {
	parent := context.Background()
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// Only the span context: ctx is the request's and ends with it.
		parent = trace.ContextWithSpanContext(parent, sc)
	}
	t.openSpan(parent, gid, mode)
}

// resumed opens the transaction span of a transaction taken up again: it
// covers the rest of the transaction, from the restart or takeover to the
// final status, in a trace of its own (the first part's span, if any, was
// another process's).
func (t *Tracer) resumed(gid string, mode protocol.Mode, how string) {
	t.openSpan(context.Background(), gid, mode, AttrResumed.String(how))
}

func (t *Tracer) openSpan(parent context.Context, gid string, mode protocol.Mode, extra ...attribute.KeyValue) {
	attrs := append([]attribute.KeyValue{AttrGID.String(gid), AttrMode.String(string(mode))}, extra...)
	_, span := t.tracer.Start(parent, "concord "+string(mode)+" transaction",
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attrs...))
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.open) >= maxOpen {
		span.End()
		return
	}
	if old := t.open[gid]; old != nil {
		old.End()
	}
	t.open[gid] = span
}

func (t *Tracer) ended(gid string, _ protocol.Mode, status protocol.Status) {
	t.mu.Lock()
	span := t.open[gid]
	delete(t.open, gid)
	t.mu.Unlock()
	if span == nil {
		return // past maxOpen when it started
	}
	span.SetAttributes(AttrStatus.String(string(status)))
	if status == protocol.StatusAborted {
		span.SetStatus(codes.Error, "aborted")
	}
	span.End()
}

func (t *Tracer) alerted(a coordinator.Alert) {
	t.mu.Lock()
	span := t.open[a.GID]
	t.mu.Unlock()
	if span != nil {
		span.AddEvent("alert: "+a.Kind, trace.WithAttributes(attribute.String("message", a.Message)))
	}
}

func (t *Tracer) callStart(ctx context.Context, gid string, mode protocol.Mode, call protocol.Call) (context.Context, func(protocol.Outcome, string)) {
	t.mu.Lock()
	parent := t.open[gid]
	t.mu.Unlock()
	if parent != nil {
		ctx = trace.ContextWithSpan(ctx, parent)
	}
	ctx, span := t.tracer.Start(ctx, "concord "+string(call.Op)+" "+call.Branch,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			AttrGID.String(gid), AttrMode.String(string(mode)), AttrBranch.String(call.Branch),
			AttrOp.String(string(call.Op)), AttrAttempt.Int(call.Attempt), AttrURL.String(destination.Redact(call.URL)),
		))
	return ctx, func(outcome protocol.Outcome, msg string) {
		span.SetAttributes(AttrOutcome.String(string(outcome)))
		if outcome == protocol.OutcomeUnknown {
			span.SetStatus(codes.Error, msg)
		}
		span.End()
	}
}
