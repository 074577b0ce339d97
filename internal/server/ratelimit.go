package server

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clientLimiter is a token bucket per client IP (the TCP peer's address:
// behind a proxy, all clients of the proxy share one bucket). Buckets idle
// for a while are dropped.
type clientLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	clients map[netip.Addr]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// idleBucket is how long a client's bucket is kept after its last request.
const idleBucket = 3 * time.Minute

func newClientLimiter(perSecond float64, burst int) *clientLimiter {
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &clientLimiter{limit: rate.Limit(perSecond), burst: burst, clients: map[netip.Addr]*bucket{}}
}

// allow takes a token from ip's bucket; if there is none, it returns how
// long until there will be.
func (l *clientLimiter) allow(ip netip.Addr, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > idleBucket {
		for a, b := range l.clients {
			if now.Sub(b.seen) > idleBucket {
				delete(l.clients, a)
			}
		}
		l.swept = now
	}
	b := l.clients[ip]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.clients[ip] = b
	}
	b.seen = now
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	r := b.lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// rateLimited answers a client over its rate with 429 and the JSON error
// body (code resource_exhausted) and a Retry-After header, or for gRPC
// with the status RESOURCE_EXHAUSTED. Health probes are never limited.
func rateLimited(l *clientLimiter, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/livez", "/healthz", "/readyz":
			next.ServeHTTP(w, r)
			return
		}
		ip := remoteIP(r.RemoteAddr)
		ok, wait := l.allow(ip, time.Now())
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		secs := max(1, int(math.Ceil(wait.Seconds())))
		msg := fmt.Sprintf("rate limit: more than %v requests per second from %s (serve -rate-limit); retry in %ds", float64(l.limit), ip, secs)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
			w.Header().Set("Grpc-Status", "8") // RESOURCE_EXHAUSTED
			w.Header().Set("Grpc-Message", msg)
			w.WriteHeader(http.StatusOK)
			return
		}
		writeJSONError(w, http.StatusTooManyRequests, "resource_exhausted", msg)
	})
}

func remoteIP(addr string) netip.Addr {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}

// bodyTimeout gives a request this long to deliver its body: a client that
// sends headers and then trickles (or withholds) the body is cut off
// instead of holding a connection and a goroutine. The deadline is lifted
// once the body has been read, so a wait=true call may then block as long
// as it is allowed to. (http.Server.ReadTimeout would also bound the time
// a handler may wait.)
func bodyTimeout(d time.Duration, next http.Handler) http.Handler {
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &deadlineBody{body: r.Body, done: func() { rc.SetReadDeadline(time.Time{}) },
			// The rest of the body may still come: the connection cannot
			// carry another request, so it is closed after the answer.
			failed: func() { w.Header().Set("Connection", "close") }}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody calls done when the body has been read to its end, or
// failed when a read fails (a timeout): then the deadline stays, so that
// the server's own attempt to drain the rest of the body fails too.
type deadlineBody struct {
	body   io.ReadCloser
	done   func() // once, at the end of the body
	failed func() // once, on the first read error but io.EOF
	once   sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		b.once.Do(b.done)
	case err != nil:
		b.once.Do(b.failed)
	}
	return n, err
}

func (b *deadlineBody) Close() error { return b.body.Close() }
