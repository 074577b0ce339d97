package api

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSlowClientsAndFloods on the real binary: a client over -rate-limit
// gets 429 with the JSON error body while another endpoint's health probe
// is still answered; a connection that trickles its headers or withholds
// its body is closed after -read-header-timeout or -body-read-timeout.
func TestSlowClientsAndFloods(t *testing.T) {
	t.Parallel()
	srv := serve(t, "-rate-limit", "2", "-rate-burst", "2")
	var limited apiReply
	for range 10 {
		r := post(t, srv.URL, "ListTransactions", `{}`)
		if r.status == http.StatusTooManyRequests {
			limited = r
			break
		}
	}
	if limited.status != http.StatusTooManyRequests || limited.code != "resource_exhausted" || !strings.Contains(limited.message, "rate limit") {
		t.Errorf("10 requests at once with -rate-limit 2: last reply HTTP %d %s %q, want 429 resource_exhausted", limited.status, limited.code, limited.message)
	}
	if resp, err := http.Get(srv.URL + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("readyz while rate limited: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// A server without a rate limit: the probes below must not wait for
	// tokens.
	slow := serve(t, "-read-header-timeout", "300ms", "-body-read-timeout", "300ms")
	addr := strings.TrimPrefix(slow.URL, "http://")
	for name, partial := range map[string]string{
		"headers trickled": "POST /concord.v1.CoordinatorService/ListTransactions HTTP/1.1\r\nHost: x\r\n",
		"body withheld":    "POST /concord.v1.CoordinatorService/ListTransactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, partial)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		io.ReadAll(conn)
		conn.Close()
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: the connection was held for %v", name, took)
		}
	}
}
