package api

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// collected is one span an OTLP collector received.
type collected struct {
	name, traceID, spanID, parentID, gid string
}

// collector keeps the spans of OTLP export requests.
type collector struct {
	mu    sync.Mutex
	spans []collected
}

func (c *collector) add(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := collected{name: s.GetName(), traceID: hex.EncodeToString(s.GetTraceId()),
					spanID: hex.EncodeToString(s.GetSpanId()), parentID: hex.EncodeToString(s.GetParentSpanId())}
				for _, kv := range s.GetAttributes() {
					if kv.GetKey() == "concord.gid" {
						sp.gid = kv.GetValue().GetStringValue()
					}
				}
				c.spans = append(c.spans, sp)
			}
		}
	}
}

func (c *collector) all() []collected {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]collected(nil), c.spans...)
}

// httpCollector serves OTLP/HTTP (protobuf) at /v1/traces.
func httpCollector(t *testing.T, c *collector) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("OTLP/HTTP collector: %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
			http.Error(w, "unexpected", http.StatusBadRequest)
			return
		}
		body := io.Reader(r.Body)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &req)
		}
		if err != nil {
			t.Errorf("OTLP/HTTP collector: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// grpcCollector serves the OTLP/gRPC trace service.
type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	c *collector
}

func (g grpcCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.c.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startGRPCCollector(t *testing.T, c *collector) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcCollector{c: c})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return "http://" + ln.Addr().String()
}

// TestTraceThroughCoordinator: one trace from the initiator, through the
// real coordinator (spans exported over OTLP/HTTP or OTLP/gRPC to a
// collector in the test), to every participant call. The initiator's
// span reaches the coordinator as a traceparent on Connect or gRPC API
// calls (the SDK injects it); the transaction spans are its children; the
// participants receive the branch spans' contexts.
func TestTraceThroughCoordinator(t *testing.T) {
	for _, tc := range []struct {
		name, protocol string
		api            []client.Option
	}{
		{name: "otlp-http, connect API", protocol: "http/protobuf"},
		{name: "otlp-grpc, gRPC API", protocol: "grpc", api: []client.Option{client.WithGRPC()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			col := &collector{}
			endpoint := ""
			if tc.protocol == "grpc" {
				endpoint = startGRPCCollector(t, col)
			} else {
				endpoint = httpCollector(t, col)
			}
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

			srv := proc.Start(t, t.TempDir(), []string{
				"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint,
				"OTEL_EXPORTER_OTLP_PROTOCOL=" + tc.protocol,
				"OTEL_BSP_SCHEDULE_DELAY=100",
			})
			initiator := sdktrace.NewTracerProvider()
			ctx, root := initiator.Tracer("shop").Start(t.Context(), "checkout")
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			trace := root.SpanContext().TraceID().String()
			c := client.New(srv.URL, append(tc.api, client.WithPropagator(propagation.TraceContext{}))...)

			saga, err := c.NewSaga("").
				Add(participant.URL+"/pay", participant.URL+"/refund", `{}`).
				Add(participant.URL+"/reject", participant.URL+"/unship", `{}`).
				SubmitAndWait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantStatus(t, saga, "aborted")
			tcc, err := c.RunTCC(ctx, "", client.Options{}, func(ctx context.Context, tx *client.TCC) error {
				_, err := tx.CallBranch(ctx, "hold", `{}`, participant.URL+"/try", participant.URL+"/confirm", participant.URL+"/cancel")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			wantStatus(t, tcc, "succeeded")
			root.End()
			srv.Stop() // flushes the coordinator's spans

			spans := col.all()
			byID := map[string]collected{}
			for _, s := range spans {
				byID[s.spanID] = s
			}
			for _, gid := range []string{saga.GID, tcc.GID} {
				var tx *collected
				for _, s := range spans {
					if s.gid == gid && strings.HasSuffix(s.name, " transaction") {
						tx = &s
					}
				}
				if tx == nil {
					t.Errorf("%s: no transaction span among %d exported", gid, len(spans))
					continue
				}
				if tx.traceID != trace || tx.parentID != root.SpanContext().SpanID().String() {
					t.Errorf("%s: transaction span %+v, want a child of the initiator's span %s in trace %s", gid, *tx, root.SpanContext().SpanID(), trace)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			// /try is called by the SDK itself; every other call by the
			// coordinator, under a branch span it exported.
			for _, k := range []string{"/pay action", "/reject action", "/refund compensate", "/try try", "/confirm confirm"} {
				parts := strings.Split(seen[k], "-")
				if len(parts) != 4 || parts[1] != trace {
					t.Errorf("participant call %q: traceparent %q, want trace %s", k, seen[k], trace)
					continue
				}
				if k == "/try try" {
					continue
				}
				if s, ok := byID[parts[2]]; !ok || s.traceID != trace || byID[s.parentID].gid == "" {
					t.Errorf("participant call %q: its span %s is not an exported branch span under a transaction span (%+v)", k, parts[2], s)
				}
			}
		})
	}
}
