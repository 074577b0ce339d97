package tracing_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/server"
	"github.com/concordtm/concord/internal/store/memstore"
	"github.com/concordtm/concord/internal/tracing"
)

// TestTraceFromInitiator: the initiator's span, sent by the SDK as a
// traceparent over Connect, gRPC or JSON, is the parent of the
// transaction span, and every participant call (the coordinator's branch
// calls and the SDK's own TCC Try) carries the initiator's trace id.
func TestTraceFromInitiator(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []client.Option
		// global: the SDK finds the propagator through otel's global
		// one instead of WithPropagator.
		global bool
	}{
		{name: "connect", opts: []client.Option{client.WithPropagator(propagation.TraceContext{})}},
		{name: "grpc", opts: []client.Option{client.WithGRPC(), client.WithPropagator(propagation.TraceContext{})}},
		{name: "json-global-propagator", opts: []client.Option{client.WithJSON()}, global: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.global {
				old := otel.GetTextMapPropagator()
				otel.SetTextMapPropagator(propagation.TraceContext{})
				t.Cleanup(func() { otel.SetTextMapPropagator(old) })
			}
			testTraceFromInitiator(t, tc.opts)
		})
	}
}

func testTraceFromInitiator(t *testing.T, opts []client.Option) {
	var mu sync.Mutex
	seen := map[string]string{} // "path op" → traceparent
	participant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen[r.URL.Path+" "+r.Header.Get("Concord-Op")] = r.Header.Get("Traceparent")
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/reject") {
			http.Error(w, "no", http.StatusConflict)
		}
	}))
	defer participant.Close()

	spans := tracetest.NewSpanRecorder()
	tr := tracing.New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	coord := coordinator.New(coordinator.Config{
		Listener: tr.Listener(),
		Caller:   coordinator.NewDecoratedCaller(tr.Decorate),
	}, memstore.New())
	if err := coord.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	api := httptest.NewUnstartedServer(tr.Extract(server.Handler(server.NewService(coord, server.Limits{}), "")))
	api.Config.Protocols = new(http.Protocols)
	api.Config.Protocols.SetHTTP1(true)
	api.Config.Protocols.SetUnencryptedHTTP2(true) // gRPC (h2c)
	api.Start()
	defer api.Close()

	// The initiator's own tracer, as an application would have.
	initiator := sdktrace.NewTracerProvider()
	ctx, root := initiator.Tracer("shop").Start(t.Context(), "checkout")
	want := root.SpanContext()

	c := client.New(api.URL, opts...)
	saga, err := c.NewSaga("").
		Add(participant.URL+"/pay", participant.URL+"/refund", `{}`).
		Add(participant.URL+"/reject", participant.URL+"/unship", `{}`).
		SubmitAndWait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tcc, err := c.RunTCC(ctx, "", client.Options{}, func(ctx context.Context, tx *client.TCC) error {
		_, err := tx.CallBranch(ctx, "hold", `{}`, participant.URL+"/try", participant.URL+"/confirm", participant.URL+"/cancel")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	root.End()
	coord.Close() // every span ended

	txSpans := map[string]sdktrace.ReadOnlySpan{} // gid → transaction span
	for _, s := range spans.Ended() {
		if strings.HasSuffix(s.Name(), " transaction") {
			txSpans[attr(s, "concord.gid")] = s
		}
	}
	for _, gid := range []string{saga.GID, tcc.GID} {
		s := txSpans[gid]
		if s == nil {
			t.Errorf("%s: no transaction span", gid)
			continue
		}
		if s.SpanContext().TraceID() != want.TraceID() || s.Parent().SpanID() != want.SpanID() || !s.Parent().IsRemote() {
			t.Errorf("%s: transaction span in trace %s under %s, want a child of the initiator's span %s/%s",
				gid, s.SpanContext().TraceID(), s.Parent().SpanID(), want.TraceID(), want.SpanID())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range []string{"/pay action", "/reject action", "/refund compensate", "/try try", "/confirm confirm"} {
		tp := seen[k]
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || parts[1] != want.TraceID().String() {
			t.Errorf("participant call %q: traceparent %q, want trace %s", k, tp, want.TraceID())
		}
	}
	if len(seen) != 5 {
		t.Errorf("participant calls %v", seen)
	}
}

// TestNoTraceparentNewTrace: a submission without a traceparent still
// gets a transaction span, as the root of a trace of its own.
func TestNoTraceparentNewTrace(t *testing.T) {
	participant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer participant.Close()
	spans := tracetest.NewSpanRecorder()
	tr := tracing.New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	coord := coordinator.New(coordinator.Config{Listener: tr.Listener(), Caller: coordinator.NewDecoratedCaller(tr.Decorate)}, memstore.New())
	if err := coord.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	api := httptest.NewServer(tr.Extract(server.Handler(server.NewService(coord, server.Limits{}), "")))
	defer api.Close()
	if _, err := client.New(api.URL).NewSaga("").Add(participant.URL+"/a", participant.URL+"/b", `{}`).SubmitAndWait(t.Context()); err != nil {
		t.Fatal(err)
	}
	coord.Close()
	for _, s := range spans.Ended() {
		if strings.HasSuffix(s.Name(), " transaction") {
			if s.Parent().IsValid() {
				t.Errorf("transaction span has parent %v", s.Parent())
			}
			return
		}
	}
	t.Errorf("no transaction span")
}
