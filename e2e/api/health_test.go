package api

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/concordtm/concord/internal/testenv/daemon"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// rawHTTP makes one request and returns the status, Content-Type and body.
func rawHTTP(t *testing.T, method, url, contentType string, body io.Reader) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// Wrong paths, methods, content types and oversized bodies are answered
// with the same JSON error body as every other API error.
func TestErrorBodiesAreJSON(t *testing.T) {
	t.Parallel()
	srv := serve(t, "-max-request-bytes", "1000")
	api := srv.URL + "/concord.v1.CoordinatorService/NewGID"
	for _, tc := range []struct {
		name, method, url, ctype string
		body                     string
		status                   int
		code, mention            string
	}{
		{"no such path", "POST", srv.URL + "/nope", "application/json", "{}", 404, "not_found", "/nope"},
		{"wrong method", "GET", api, "", "", 405, "method_not_allowed", "POST"},
		{"wrong method on healthz", "DELETE", srv.URL + "/healthz", "", "", 405, "method_not_allowed", "/healthz"},
		{"unsupported content type", "POST", api, "text/plain", "{}", 415, "unsupported_media_type", "text/plain"},
		{"body too large", "POST", api, "application/json", `{"x":"` + strings.Repeat("a", 2000) + `"}`, 413, "resource_exhausted", "-max-request-bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, ctype, body := rawHTTP(t, tc.method, tc.url, tc.ctype, strings.NewReader(tc.body))
			var e struct{ Code, Message string }
			if status != tc.status || !strings.HasPrefix(ctype, "application/json") || json.Unmarshal([]byte(body), &e) != nil ||
				e.Code != tc.code || !strings.Contains(e.Message, tc.mention) {
				t.Fatalf("HTTP %d %q %q; want %d with a JSON error %q mentioning %q", status, ctype, body, tc.status, tc.code, tc.mention)
			}
		})
	}
}

func grpcConn(t *testing.T, base string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(strings.TrimPrefix(base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// The health endpoints and the gRPC health and reflection services answer
// on a healthy coordinator.
func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	srv := serve(t)
	for _, p := range []string{"/livez", "/healthz", "/readyz"} {
		if status, _, body := rawHTTP(t, "GET", srv.URL+p, "", nil); status != 200 || body != "ok\n" {
			t.Errorf("GET %s: %d %q, want 200 ok", p, status, body)
		}
	}
	conn := grpcConn(t, srv.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "concord.v1.CoordinatorService"} {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("gRPC health of %q: %v %v, want SERVING", svc, r.GetStatus(), err)
		}
	}
	stream, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "concord.v1.CoordinatorService") {
		t.Fatalf("reflection lists %v, want concord.v1.CoordinatorService", names)
	}
}

// /healthz, /readyz and the gRPC health service say when the store cannot
// be reached, and recover with it; /livez does not (restarting the
// coordinator would not help).
func TestHealthFollowsTheStore(t *testing.T) {
	t.Parallel()
	redis := daemon.Redis(t)
	srv := proc.Start(t, t.TempDir(), nil, "-store", "redis://"+redis.Addr+"/0", "-lease-ttl", "2s")
	hc := healthpb.NewHealthClient(grpcConn(t, srv.URL))
	check := func() (int, string, healthpb.HealthCheckResponse_ServingStatus, int) {
		status, _, body := rawHTTP(t, "GET", srv.URL+"/healthz", "", nil)
		ready, _, _ := rawHTTP(t, "GET", srv.URL+"/readyz", "", nil)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("gRPC health: %v", err)
		}
		return status, body, r.GetStatus(), ready
	}
	if s, body, g, ready := check(); s != 200 || g != healthpb.HealthCheckResponse_SERVING || ready != 200 {
		t.Fatalf("store up: healthz %d %q, readyz %d, gRPC %v", s, body, ready, g)
	}
	redis.Kill()
	var body string
	eventually(t, 30*time.Second, "healthz to report the store down", func() bool {
		var s, ready int
		var g healthpb.HealthCheckResponse_ServingStatus
		s, body, g, ready = check()
		return s == 503 && ready == 503 && g == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if !strings.Contains(body, "store") {
		t.Errorf("healthz body %q does not name the store", body)
	}
	if status, _, _ := rawHTTP(t, "GET", srv.URL+"/livez", "", nil); status != 200 {
		t.Errorf("livez with the store down: %d, want 200", status)
	}
	redis.Start()
	eventually(t, 30*time.Second, "healthz to recover with the store", func() bool {
		s, _, g, ready := check()
		return s == 200 && ready == 200 && g == healthpb.HealthCheckResponse_SERVING
	})
}

// A TLS certificate that cannot be loaded fails the start, before the
// server says it listens; listening beyond loopback without a token is
// warned about.
func TestServeStartupChecks(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, proc.Binary(t), "serve", "-data-dir", t.TempDir(), "-addr", "127.0.0.1:0",
		"-tls-cert", "/nonexistent/cert.pem", "-tls-key", "/nonexistent/key.pem").CombinedOutput()
	if err == nil || strings.Contains(string(out), "listening") || !strings.Contains(string(out), "tls") {
		t.Fatalf("serve with a missing certificate: %v\n%s\nwant a failed start naming tls, before any 'listening'", err, out)
	}
	srv := serve(t, "-addr", "0.0.0.0:0")
	eventually(t, 10*time.Second, "a warning about no token", func() bool {
		return strings.Contains(srv.Stderr(), "without -token")
	})
	if _, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://")); port == "" {
		t.Fatalf("no port in %s", srv.URL)
	}
}
