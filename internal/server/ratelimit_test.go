package server

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClientLimiter(t *testing.T) {
	l := newClientLimiter(2, 3)
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.allow(a, now); !ok {
			t.Fatalf("request %d of a burst of 3 refused", i+1)
		}
	}
	ok, wait := l.allow(a, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("4th request: allowed %v, wait %v; want refused, wait 500ms", ok, wait)
	}
	if ok, _ := l.allow(b, now); !ok {
		t.Fatal("another client shares the first one's bucket")
	}
	if ok, _ := l.allow(a, now.Add(500*time.Millisecond)); !ok {
		t.Fatal("refused after a token came back (2/s)")
	}
	// Idle buckets are dropped.
	l.allow(b, now.Add(10*time.Minute))
	if _, kept := l.clients[a]; kept {
		t.Error("an idle client's bucket was kept")
	}
}

func TestRateLimitedAnswers429(t *testing.T) {
	h := rateLimited(newClientLimiter(1, 1), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	do := func(path, contentType string) *http.Response {
		r := httptest.NewRequest("POST", path, strings.NewReader("{}"))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result()
	}
	if resp := do("/concord.v1.CoordinatorService/GetTransaction", "application/json"); resp.StatusCode != 200 {
		t.Fatalf("first request: HTTP %d", resp.StatusCode)
	}
	resp := do("/concord.v1.CoordinatorService/GetTransaction", "application/json")
	var body struct{ Code, Message string }
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusTooManyRequests || body.Code != "resource_exhausted" || !strings.Contains(body.Message, "rate limit") || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("second request: HTTP %d %+v Retry-After %q; want 429 resource_exhausted, Retry-After 1", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp := do("/concord.v1.CoordinatorService/GetTransaction", "application/grpc"); resp.Header.Get("Grpc-Status") != "8" {
		t.Errorf("gRPC over the limit: HTTP %d grpc-status %q, want 8", resp.StatusCode, resp.Header.Get("Grpc-Status"))
	}
	if resp := do("/readyz", ""); resp.StatusCode != 200 {
		t.Errorf("a health probe was limited: HTTP %d", resp.StatusCode)
	}
}

// TestBodyTimeout: a client that sends its headers and then withholds the
// body is cut off after the body timeout; one that sends its body may
// then wait in the handler longer than that.
func TestBodyTimeout(t *testing.T) {
	srv := httptest.NewServer(bodyTimeout(200*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		time.Sleep(400 * time.Millisecond) // a wait=true call, past the body timeout
		io.WriteString(w, "ok")
	})))
	defer srv.Close()

	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Errorf("a prompt body, then a long handler: HTTP %d %q", resp.StatusCode, b)
	}

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	reply, _ := io.ReadAll(conn)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("a withheld body held the connection for %v", took)
	}
	if len(reply) > 0 && !strings.Contains(string(reply), "408") {
		t.Errorf("reply to a withheld body: %q", reply)
	}
}
