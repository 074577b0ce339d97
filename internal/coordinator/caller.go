package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/concordtm/concord/internal/destination"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/participant"
)

// Caller performs one branch operation and classifies its outcome. An
// implementation must never report OutcomeRejected unless the participant
// said "no" (nothing was done), and must report OutcomeUnknown whenever the
// operation may have taken effect.
type Caller interface {
	Call(ctx context.Context, gid string, mode protocol.Mode, c protocol.Call) (protocol.Outcome, string)
}

// HTTPCaller calls participants over HTTP. The wire form:
//
//   - POST to the branch URL, body = the branch payload,
//     headers Concord-Gid, Concord-Branch, Concord-Op, Concord-Mode, and
//     on a 2PC prepare or a 3PC can-commit or pre-commit Concord-Peers
//     (the other voting branches, a JSON array of {"branch", "url"});
//   - 2xx: success (for a 2PC prepare, a yes vote; with the header
//     Concord-Vote: read-only, a read-only vote);
//   - 409 Conflict: rejected (a business "no"); the body is the reason;
//   - anything else (other status, timeout, connection error): unknown.
type HTTPCaller struct {
	Client *http.Client
	// Decorate, if set, may add headers (e.g. tracing) to each request.
	Decorate func(*http.Request)
	// Destinations, if set, adds credentials (headers, a client
	// certificate, a CA) to the calls whose URL it matches.
	Destinations *Destinations
}

// NewHTTPCaller returns a caller with a transport tuned for many concurrent
// calls to a few participant hosts.
func NewHTTPCaller() *HTTPCaller {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	return &HTTPCaller{Client: &http.Client{
		Transport: tr,
		// A branch URL is called as given: a redirect is answered as an
		// unknown outcome (and retried), never followed with the payload
		// to wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// maxReason bounds how much of a response body is kept as the error text.
const maxReason = 512

// Call implements Caller.
func (h *HTTPCaller) Call(ctx context.Context, gid string, mode protocol.Mode, c protocol.Call) (protocol.Outcome, string) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(c.Timeout))
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Payload))
	if err != nil {
		// A URL that cannot even form a request; validated at submit, so
		// this is unexpected. Nothing was sent, but retrying is harmless.
		return protocol.OutcomeUnknown, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	client := h.Client
	if d := h.Destinations.lookup(c.URL); d != nil {
		d.apply(req.Header)
		if d.http != nil {
			client = d.http
		}
	}
	participant.Branch{GID: gid, BranchID: c.Branch, Op: participant.Op(c.Op), Mode: string(mode)}.SetHeaders(req.Header)
	if p := peersHeader(c); p != "" {
		req.Header.Set(participant.HeaderPeers, p)
	}
	if h.Decorate != nil {
		h.Decorate(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return protocol.OutcomeUnknown, "timeout: " + err.Error()
		}
		return protocol.OutcomeUnknown, err.Error()
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if c.Op == protocol.OpPrepare && resp.Header.Get(participant.HeaderVote) == "read-only" {
			return protocol.OutcomeReadOnly, ""
		}
		return protocol.OutcomeSuccess, ""
	case resp.StatusCode == http.StatusConflict:
		return protocol.OutcomeRejected, strings.TrimSpace(string(body))
	default:
		return protocol.OutcomeUnknown, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
}

// maxErrorText bounds the error text a call's result keeps (and so the
// record, the API and the dashboard show): a participant's answer is
// untrusted and may be large.
const maxErrorText = 1024

// truncatedMark ends an error text that was cut at maxErrorText.
const truncatedMark = " …[truncated]"

// boundError cuts msg to at most maxErrorText bytes (on a rune boundary),
// marked as truncated.
func boundError(msg string) string {
	if len(msg) <= maxErrorText {
		return msg
	}
	cut := maxErrorText - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + truncatedMark
}

// scrubSecrets hides the credentials of url (a password in its user info,
// secret query parameters: see destination.Secrets) wherever they appear
// in msg, an error text that is stored, shown by the API and logged: a
// client library's error may quote the URL it dialled (net/http hides the
// password, not a token in the query).
func scrubSecrets(msg, url string) string {
	if msg == "" {
		return msg
	}
	if red := destination.Redact(url); red != url {
		msg = strings.ReplaceAll(msg, url, red)
	}
	for _, s := range destination.Secrets(url) {
		// A very short secret would blank out ordinary words.
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}
