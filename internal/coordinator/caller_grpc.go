package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/internal/destination"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/participant"
)

// GRPCCaller calls participants served over gRPC. A branch URL
// grpc://host:port/<package.Service>/<Method> (grpcs:// with TLS) names a
// unary method taking concord.v1.BranchRequest and returning
// concord.v1.BranchResponse; a 2PC prepare and a 3PC can-commit or
// pre-commit carry the metadata concord-peers (as Concord-Peers over
// HTTP). Outcomes: OK is success (for a prepare, vote "read-only" is a
// read-only vote); ABORTED is rejected; any other status, a timeout or a
// connection error is unknown. A URL ending in ?message=base64 calls an
// ordinary gRPC method with its own request type instead (see
// caller_grpc_message.go).
type GRPCCaller struct {
	plain, secure *http.Client
	mu            sync.Mutex
	clients       map[string]*connect.Client[v1.BranchRequest, v1.BranchResponse]
	// messageClients serve ?message=base64 URLs (caller_grpc_message.go).
	messageClients map[string]*connect.Client[wireMessage, wireMessage]
	// Decorate, if set, may add metadata (e.g. tracing) to each request.
	Decorate func(context.Context, http.Header)
	// Destinations, if set, adds credentials (metadata, a client
	// certificate, a CA) to the calls whose URL it matches.
	Destinations *Destinations
}

// NewGRPCCaller returns a caller with HTTP/2 transports: cleartext (h2c)
// for grpc:// and TLS for grpcs://.
func NewGRPCCaller() *GRPCCaller {
	dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	h2c := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 64, Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	h2 := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
	return &GRPCCaller{
		plain:          &http.Client{Transport: h2c},
		secure:         &http.Client{Transport: h2},
		clients:        map[string]*connect.Client[v1.BranchRequest, v1.BranchResponse]{},
		messageClients: map[string]*connect.Client[wireMessage, wireMessage]{},
	}
}

// target picks the HTTP client for a grpc:// or grpcs:// branch URL (the
// destination's own for grpcs with credentials) and the URL connect calls.
func (g *GRPCCaller) target(raw string, d *credEntry) (*http.Client, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", err
	}
	hc, scheme := g.plain, "http"
	if u.Scheme == "grpcs" {
		hc, scheme = g.secure, "https"
		if d != nil && d.grpc != nil {
			hc = d.grpc
		}
	}
	return hc, scheme + "://" + u.Host + u.Path, nil
}

// client returns the (cached) connect client for a branch URL.
func (g *GRPCCaller) client(raw string, d *credEntry) (*connect.Client[v1.BranchRequest, v1.BranchResponse], error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.clients[raw]; ok {
		return c, nil
	}
	hc, target, err := g.target(raw, d)
	if err != nil {
		return nil, err
	}
	c := connect.NewClient[v1.BranchRequest, v1.BranchResponse](hc, target, connect.WithGRPC())
	if len(g.clients) < 10000 {
		g.clients[raw] = c
	}
	return c, nil
}

// Call implements Caller.
func (g *GRPCCaller) Call(ctx context.Context, gid string, mode protocol.Mode, c protocol.Call) (protocol.Outcome, string) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(c.Timeout))
		defer cancel()
	}
	d := g.Destinations.lookup(c.URL)
	if isMessageURL(c.URL) {
		return g.callMessage(ctx, gid, mode, c, d)
	}
	cl, err := g.client(c.URL, d)
	if err != nil {
		return protocol.OutcomeUnknown, err.Error()
	}
	req := connect.NewRequest(&v1.BranchRequest{
		Gid: gid, BranchId: c.Branch, Op: string(c.Op), Mode: string(mode), Payload: c.Payload,
	})
	d.apply(req.Header())
	if p := peersHeader(c); p != "" {
		req.Header().Set(participant.HeaderPeers, p)
	}
	if g.Decorate != nil {
		g.Decorate(ctx, req.Header())
	}
	resp, err := cl.CallUnary(ctx, req)
	if err != nil {
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Code() == connect.CodeAborted {
			return protocol.OutcomeRejected, ce.Message()
		}
		return protocol.OutcomeUnknown, trimReason(err.Error())
	}
	if c.Op == protocol.OpPrepare && resp.Msg.Vote == "read-only" {
		return protocol.OutcomeReadOnly, ""
	}
	return protocol.OutcomeSuccess, ""
}

func trimReason(s string) string {
	if len(s) > maxReason {
		return s[:maxReason]
	}
	return s
}

// SchemeCaller sends each call to the caller for its URL's scheme:
// http/https to HTTP, grpc/grpcs to GRPC, broker URLs to Broker.
type SchemeCaller struct {
	HTTP   Caller
	GRPC   Caller
	Broker Caller // amqp, nats, redis, kafka (message deliveries)
}

// GuardDials makes every HTTP and gRPC connection the caller opens ask
// p.CheckDial first, with the address DNS gave: a branch URL whose name
// resolves to the coordinator's own listener is not called (an unknown
// outcome, as for a refused connection). Call it before the first call.
func (s *SchemeCaller) GuardDials(p *destination.Policy) {
	dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error { return p.CheckDial(network, address) }}).DialContext
	var clients []*http.Client
	if h, ok := s.HTTP.(*HTTPCaller); ok {
		clients = append(clients, h.Client)
	}
	if g, ok := s.GRPC.(*GRPCCaller); ok {
		clients = append(clients, g.plain, g.secure)
	}
	for _, c := range clients {
		if tr, ok := c.Transport.(*http.Transport); ok {
			tr.DialContext = dial
		}
	}
}

// NewSchemeCaller returns a caller for http, https, grpc and grpcs URLs.
func NewSchemeCaller() *SchemeCaller {
	return &SchemeCaller{HTTP: NewHTTPCaller(), GRPC: NewGRPCCaller(), Broker: NewBrokerCaller()}
}

// WithDestinations makes the HTTP and gRPC callers add d's credentials to
// the calls it matches, and returns s.
func (s *SchemeCaller) WithDestinations(d *Destinations) *SchemeCaller {
	if h, ok := s.HTTP.(*HTTPCaller); ok {
		h.Destinations = d
	}
	if g, ok := s.GRPC.(*GRPCCaller); ok {
		g.Destinations = d
	}
	return s
}

// Call implements Caller.
func (s *SchemeCaller) Call(ctx context.Context, gid string, mode protocol.Mode, c protocol.Call) (protocol.Outcome, string) {
	if strings.HasPrefix(c.URL, "grpc://") || strings.HasPrefix(c.URL, "grpcs://") {
		return s.GRPC.Call(ctx, gid, mode, c)
	}
	if s.Broker != nil && IsBrokerURL(c.URL) {
		return s.Broker.Call(ctx, gid, mode, c)
	}
	return s.HTTP.Call(ctx, gid, mode, c)
}
