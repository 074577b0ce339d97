package coordinator

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// ErrDestinations wraps every problem with a destinations configuration.
var ErrDestinations = errors.New("coordinator: destinations")

// Destination is how the coordinator authenticates to one group of
// participants: headers and a bearer token added to every branch call, a
// client certificate presented in the TLS handshake, and a CA to trust
// instead of the system roots. Files are PEM paths. None of it is ever
// returned by the API, shown in the dashboard or logged.
type Destination struct {
	Headers     map[string]string `json:"headers,omitempty"`
	BearerToken string            `json:"bearer_token,omitempty"`
	TLSCert     string            `json:"tls_cert,omitempty"` // with TLSKey: client certificate
	TLSKey      string            `json:"tls_key,omitempty"`
	CA          string            `json:"ca,omitempty"` // PEM bundle trusted for the participant's certificate
}

// credEntry is a Destination ready for use: matched by URL prefix or
// host, with its own transports when it brings TLS settings.
type credEntry struct {
	match  string // URL prefix (has "://") or host ("pay.internal", "pay.internal:8443")
	header http.Header
	tls    *tls.Config  // nil: the default transports
	http   *http.Client // for http/https, with tls
	grpc   *http.Client // for grpcs (HTTP/2 over TLS), with tls
}

// Destinations maps branch URLs to their credentials. The zero value and
// nil match nothing.
type Destinations struct {
	list []*credEntry // longest match first
}

// LoadDestinations reads a JSON object mapping a URL prefix
// ("https://pay.internal/v1/") or a host ("ledger.internal" or
// "ledger.internal:8443") to a Destination, loads its certificate files
// (so a bad file fails the start, not every call) and returns the
// result. An empty path returns nil (no destinations).
func LoadDestinations(path string) (*Destinations, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDestinations, err)
	}
	var m map[string]Destination
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		// The JSON error names a position, never the file's secrets.
		return nil, fmt.Errorf("%w: %s: %v", ErrDestinations, path, err)
	}
	return NewDestinations(m)
}

// NewDestinations builds Destinations from match → Destination.
func NewDestinations(m map[string]Destination) (*Destinations, error) {
	d := &Destinations{}
	var errs []error
	for match, dest := range m {
		cd, err := compile(match, dest)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %q: %v", ErrDestinations, match, err))
			continue
		}
		d.list = append(d.list, cd)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Slice(d.list, func(i, j int) bool {
		if len(d.list[i].match) != len(d.list[j].match) {
			return len(d.list[i].match) > len(d.list[j].match)
		}
		return d.list[i].match < d.list[j].match
	})
	return d, nil
}

func compile(match string, dest Destination) (*credEntry, error) {
	if match == "" {
		return nil, errors.New("empty match")
	}
	cd := &credEntry{match: match, header: http.Header{}}
	for k, v := range dest.Headers {
		ck := http.CanonicalHeaderKey(k)
		if strings.HasPrefix(ck, "Concord-") || strings.HasPrefix(ck, "Grpc-") || ck == "Content-Type" || ck == "Host" || ck == "Te" {
			return nil, fmt.Errorf("header %q is the protocol's own", k)
		}
		cd.header.Set(k, v)
	}
	if dest.BearerToken != "" {
		cd.header.Set("Authorization", "Bearer "+dest.BearerToken)
	}
	if (dest.TLSCert == "") != (dest.TLSKey == "") {
		return nil, errors.New("tls_cert and tls_key go together")
	}
	if dest.TLSCert == "" && dest.CA == "" {
		return cd, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if dest.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(dest.TLSCert, dest.TLSKey)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if dest.CA != "" {
		pem, err := os.ReadFile(dest.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate", dest.CA)
		}
		cfg.RootCAs = pool
	}
	cd.tls = cfg
	dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	cd.http = &http.Client{
		Transport: &http.Transport{
			DialContext: dial, TLSClientConfig: cfg, MaxIdleConnsPerHost: 256,
			IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	cd.grpc = &http.Client{Transport: &http.Transport{DialContext: dial, TLSClientConfig: cfg, MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: true}}
	return cd, nil
}

// lookup returns the destination for a branch URL: the longest matching
// key (URL prefix or host), or nil.
func (d *Destinations) lookup(raw string) *credEntry {
	if d == nil || len(d.list) == 0 {
		return nil
	}
	var host, hostname string
	if u, err := url.Parse(raw); err == nil {
		host, hostname = u.Host, u.Hostname()
	}
	for _, cd := range d.list {
		if strings.Contains(cd.match, "://") {
			if strings.HasPrefix(raw, cd.match) {
				return cd
			}
			continue
		}
		if host != "" && (strings.EqualFold(cd.match, host) || strings.EqualFold(cd.match, hostname)) {
			return cd
		}
	}
	return nil
}

// apply adds the destination's headers to h.
func (cd *credEntry) apply(h http.Header) {
	if cd == nil {
		return
	}
	for k, v := range cd.header {
		h[k] = v
	}
}
