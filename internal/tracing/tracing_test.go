package tracing_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store/memstore"
	"github.com/concordtm/concord/internal/tracing"
)

// received is what the participant saw: the traceparent of every call.
type received struct {
	mu      sync.Mutex
	parents map[string]string // "branch/op" → traceparent
}

func (r *received) get(k string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.parents[k]
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func TestSagaTrace(t *testing.T) {
	rec := &received{parents: map[string]string{}}
	participant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.parents[r.Header.Get("Concord-Branch")+"/"+r.Header.Get("Concord-Op")] = r.Header.Get("Traceparent")
		rec.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/reject") {
			http.Error(w, "no", http.StatusConflict)
		}
	}))
	defer participant.Close()

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	tr := tracing.New(tp)
	c := coordinator.New(coordinator.Config{
		Listener: tr.Listener(),
		Caller:   coordinator.NewDecoratedCaller(tr.Decorate),
	}, memstore.New())
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_, err := c.SubmitSaga(t.Context(), coordinator.SagaSpec{GID: "traced", Branches: []protocol.Branch{
		{ID: "pay", ForwardURL: participant.URL + "/pay", BackwardURL: participant.URL + "/refund"},
		{ID: "ship", ForwardURL: participant.URL + "/reject", BackwardURL: participant.URL + "/unship"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if tx, err := c.Wait(t.Context(), "traced"); err != nil || tx.Status != protocol.StatusAborted {
		t.Fatalf("saga: %s %v", tx.Status, err)
	}
	c.Close() // every call ended: its span is recorded

	var txSpan sdktrace.ReadOnlySpan
	branch := map[string]sdktrace.ReadOnlySpan{} // "branch/op" → span
	for _, s := range spans.Ended() {
		switch {
		case s.Name() == "concord saga transaction":
			txSpan = s
		case attr(s, "concord.op") != "":
			branch[attr(s, "concord.branch")+"/"+attr(s, "concord.op")] = s
		}
	}
	if txSpan == nil {
		t.Fatalf("no transaction span among %d spans", len(spans.Ended()))
	}
	if attr(txSpan, "concord.gid") != "traced" || attr(txSpan, "concord.status") != "aborted" {
		t.Errorf("transaction span attributes %v", txSpan.Attributes())
	}
	traceID := txSpan.SpanContext().TraceID()
	for _, k := range []string{"pay/action", "ship/action", "pay/compensate"} {
		s := branch[k]
		if s == nil {
			t.Errorf("no span for %s; have %v", k, keys(branch))
			continue
		}
		if s.SpanKind() != trace.SpanKindClient {
			t.Errorf("%s: kind %v", k, s.SpanKind())
		}
		if s.SpanContext().TraceID() != traceID || s.Parent().SpanID() != txSpan.SpanContext().SpanID() {
			t.Errorf("%s: not a child of the transaction span", k)
		}
		// The participant received the branch span's context:
		// 00-<trace id>-<span id>-<flags>.
		tp := rec.get(k)
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || parts[0] != "00" || parts[1] != traceID.String() || parts[2] != s.SpanContext().SpanID().String() {
			t.Errorf("%s: participant got traceparent %q, want trace %s span %s", k, tp, traceID, s.SpanContext().SpanID())
		}
	}
	if got := attr(branch["ship/action"], "concord.outcome"); got != "rejected" {
		t.Errorf("ship/action outcome %q", got)
	}
	if _, ok := branch["ship/compensate"]; ok {
		t.Errorf("a rejected action was compensated")
	}
}

func TestTracingOffByDefault(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	tp, err := tracing.FromEnv(t.Context(), getenv)
	if err != nil || tp != nil {
		t.Fatalf("no OTEL_* variables: provider %v, err %v; want tracing off", tp, err)
	}
	env["OTEL_TRACES_EXPORTER"] = "zipkin"
	if _, err := tracing.FromEnv(t.Context(), getenv); err == nil {
		t.Errorf("OTEL_TRACES_EXPORTER=zipkin: no error")
	}
	env["OTEL_TRACES_EXPORTER"] = "otlp"
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:1"
	tp, err = tracing.FromEnv(t.Context(), getenv)
	if err != nil || tp == nil {
		t.Fatalf("otlp: provider %v, err %v", tp, err)
	}
	tp.Shutdown(t.Context())
	for proto, ok := range map[string]bool{"grpc": true, "http/protobuf": true, "http/json": false} {
		env["OTEL_EXPORTER_OTLP_PROTOCOL"] = proto
		tp, err = tracing.FromEnv(t.Context(), getenv)
		if (err == nil) != ok || (tp != nil) != ok {
			t.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%s: provider %v, err %v; want accepted=%v", proto, tp, err, ok)
		}
		if tp != nil {
			tp.Shutdown(t.Context())
		}
	}
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/json"
	env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "grpc" // the traces variable wins
	if got := tracing.Protocol(getenv); got != "grpc" {
		t.Errorf("protocol %q, want grpc", got)
	}
	env["OTEL_SDK_DISABLED"] = "true"
	if tp, _ := tracing.FromEnv(t.Context(), getenv); tp != nil {
		t.Errorf("OTEL_SDK_DISABLED=true: tracing on")
	}
}

func keys(m map[string]sdktrace.ReadOnlySpan) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestResumedTrace: a transaction a restarted coordinator takes up gets a
// transaction span (concord.resumed=restart) to which its later branch
// calls belong, instead of root branch spans.
func TestResumedTrace(t *testing.T) {
	var healthy atomic.Bool
	var calls atomic.Int32
	participant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		calls.Add(1)
		if !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable) // unknown: retried
		}
	}))
	defer participant.Close()

	st := memstore.New()
	first := coordinator.New(coordinator.Config{}, st)
	if err := first.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := first.SubmitSaga(t.Context(), coordinator.SagaSpec{GID: "resumed", Branches: []protocol.Branch{
		{ID: "pay", ForwardURL: participant.URL + "/pay", BackwardURL: participant.URL + "/refund"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first coordinator never called the branch")
		}
	}
	first.Close() // "crashes" with the saga unfinished

	healthy.Store(true)
	spans := tracetest.NewSpanRecorder()
	tr := tracing.New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	second := coordinator.New(coordinator.Config{Listener: tr.Listener(), Caller: coordinator.NewDecoratedCaller(tr.Decorate)}, st)
	if err := second.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if tx, err := second.Wait(t.Context(), "resumed"); err != nil || tx.Status != protocol.StatusSucceeded {
		t.Fatalf("after the restart: %s %v", tx.Status, err)
	}
	second.Close()

	var txSpan sdktrace.ReadOnlySpan
	var calls2 []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		switch {
		case s.Name() == "concord saga transaction":
			txSpan = s
		case attr(s, "concord.op") == "action":
			calls2 = append(calls2, s)
		}
	}
	if txSpan == nil {
		t.Fatalf("no transaction span for the resumed saga among %d spans", len(spans.Ended()))
	}
	if attr(txSpan, "concord.resumed") != "restart" || attr(txSpan, "concord.status") != "succeeded" || attr(txSpan, "concord.gid") != "resumed" {
		t.Errorf("transaction span attributes %v", txSpan.Attributes())
	}
	if len(calls2) == 0 {
		t.Fatal("no branch span after the restart")
	}
	for _, s := range calls2 {
		if s.Parent().SpanID() != txSpan.SpanContext().SpanID() {
			t.Errorf("branch span %s is not a child of the resumed transaction's span", s.Name())
		}
	}
}
