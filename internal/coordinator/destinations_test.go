package coordinator

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDestinationsLookup(t *testing.T) {
	d, err := NewDestinations(map[string]Destination{
		"https://pay.internal/":       {BearerToken: "a"},
		"https://pay.internal/admin/": {BearerToken: "b"},
		"ledger.internal":             {Headers: map[string]string{"X-Key": "c"}},
		"ledger.internal:9443":        {Headers: map[string]string{"X-Key": "d"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for url, want := range map[string]string{
		"https://pay.internal/charge":           "Bearer a",
		"https://pay.internal/admin/refund":     "Bearer b",
		"http://pay.internal/charge":            "",
		"https://pay.internal.evil.example/x":   "",
		"grpcs://ledger.internal/l.Ledger/Post": "X-Key c",
		"http://ledger.internal:8080/post":      "X-Key c",
		"grpc://ledger.internal:9443/l.L/Post":  "X-Key d",
		"http://other.internal/":                "",
	} {
		h := http.Header{}
		d.lookup(url).apply(h)
		got := h.Get("Authorization")
		if v := h.Get("X-Key"); v != "" {
			got = "X-Key " + v
		}
		if got != want {
			t.Errorf("%s: got %q, want %q", url, got, want)
		}
	}
	var none *Destinations
	if none.lookup("https://pay.internal/") != nil {
		t.Error("nil Destinations matched")
	}
}

func TestLoadDestinationsErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(body string) string {
		f := filepath.Join(dir, "d.json")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if d, err := LoadDestinations(""); d != nil || err != nil {
		t.Errorf("empty path: %v, %v; want nothing", d, err)
	}
	for name, body := range map[string]string{
		"not json":      `{"x":`,
		"unknown field": `{"h": {"bearer": "secret-value"}}`,
		"cert alone":    `{"h": {"tls_cert": "c.pem"}}`,
		"missing files": `{"h": {"tls_cert": "/nonexistent/c.pem", "tls_key": "/nonexistent/k.pem"}}`,
		"missing ca":    `{"h": {"ca": "/nonexistent/ca.pem"}}`,
		"empty match":   `{"": {"bearer_token": "secret-value"}}`,
		"branch header": `{"h": {"headers": {"concord-op": "secret-value"}}}`,
		"content type":  `{"h": {"headers": {"Content-Type": "text/plain"}}}`,
	} {
		_, err := LoadDestinations(file(body))
		if !errors.Is(err, ErrDestinations) {
			t.Errorf("%s: error %v, want ErrDestinations", name, err)
		} else if strings.Contains(err.Error(), "secret-value") {
			t.Errorf("%s: error %q shows the secret", name, err)
		}
	}
}
