package coordinator

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/concordtm/concord/internal/destination"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/participant"
)

func TestHTTPCallerOutcomes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(participant.HeaderGID) != "g1" || r.Header.Get(participant.HeaderBranch) != "b1" ||
			r.Header.Get(participant.HeaderMode) != "saga" || r.Header.Get(participant.HeaderOp) == "" {
			http.Error(w, "missing branch headers", http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/no":
			http.Error(w, "stock short", http.StatusConflict)
		case "/boom":
			http.Error(w, "database down", http.StatusInternalServerError)
		case "/slow":
			<-r.Context().Done() // answers only when the caller gives up
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect)
		case "/ro":
			w.Header().Set(participant.HeaderVote, "read-only")
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer srv.Close()
	c := NewHTTPCaller()
	for _, tc := range []struct {
		path    string
		op      protocol.Op
		timeout time.Duration
		want    protocol.Outcome
		msg     string
	}{
		{"/ok", protocol.OpAction, 0, protocol.OutcomeSuccess, ""},
		{"/no", protocol.OpAction, 0, protocol.OutcomeRejected, "stock short"},
		{"/boom", protocol.OpAction, 0, protocol.OutcomeUnknown, "HTTP 500: database down"},
		{"/slow", protocol.OpAction, 50 * time.Millisecond, protocol.OutcomeUnknown, "timeout"},
		{"/redirect", protocol.OpAction, 0, protocol.OutcomeUnknown, "HTTP 307"},
		{"/ro", protocol.OpPrepare, 0, protocol.OutcomeReadOnly, ""},
		{"/ro", protocol.OpCommit, 0, protocol.OutcomeSuccess, ""}, // only a prepare can vote
	} {
		out, msg := c.Call(t.Context(), "g1", protocol.ModeSaga, protocol.Call{
			Branch: "b1", Op: tc.op, URL: srv.URL + tc.path, Timeout: int64(tc.timeout), Attempt: 1,
		})
		if out != tc.want || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s %s: (%s, %q), want (%s, containing %q)", tc.op, tc.path, out, msg, tc.want, tc.msg)
		}
	}
	// A refused connection is unknown too.
	out, _ := c.Call(t.Context(), "g1", protocol.ModeSaga, protocol.Call{Branch: "b1", Op: protocol.OpAction, URL: "http://127.0.0.1:1/x"})
	if out != protocol.OutcomeUnknown {
		t.Errorf("refused connection: %s, want unknown", out)
	}
}

// With tracing on the server uses NewDecoratedCaller; it must route broker
// URLs to the broker caller like the plain one, and Close must close it.
func TestDecoratedCallerDeliversToBrokers(t *testing.T) {
	for name, sc := range map[string]*SchemeCaller{
		"plain":     NewSchemeCaller(),
		"decorated": NewDecoratedCaller(func(context.Context, http.Header) {}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, ok := sc.Broker.(*BrokerCaller); !ok {
				t.Fatalf("Broker = %T, want *BrokerCaller", sc.Broker)
			}
			if err := sc.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// TestBoundError: a participant's long answer is kept to maxErrorText
// bytes, cut on a rune boundary and marked; a short one is kept as is.
func TestBoundError(t *testing.T) {
	if got := boundError("short"); got != "short" {
		t.Errorf("boundError(short) = %q", got)
	}
	long := strings.Repeat("é", 2000) // 2 bytes a rune
	got := boundError(long)
	if len(got) > maxErrorText || !strings.HasSuffix(got, truncatedMark) || !utf8.ValidString(got) {
		t.Errorf("boundError(4000 bytes) = %d bytes, valid UTF-8 %v, marked %v", len(got), utf8.ValidString(got), strings.HasSuffix(got, truncatedMark))
	}
}

// TestGuardDialsRefusesOwnListener: with GuardDials, a call whose address
// (after DNS) is the coordinator's own listener is not made.
func TestGuardDialsRefusesOwnListener(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	p, _ := destination.Parse("")
	p.SetSelf(srv.Listener.Addr())
	sc := NewSchemeCaller()
	defer sc.Close()
	sc.GuardDials(p)
	out, msg := sc.Call(t.Context(), "g1", protocol.ModeSaga, protocol.Call{Branch: "b1", Op: protocol.OpAction, URL: srv.URL + "/x"})
	if out != protocol.OutcomeUnknown || !strings.Contains(msg, "own listener") || hits.Load() != 0 {
		t.Errorf("call to the own listener: %v %q, %d requests arrived; want unknown, refused, none", out, msg, hits.Load())
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	if out, msg := sc.Call(t.Context(), "g1", protocol.ModeSaga, protocol.Call{Branch: "b1", Op: protocol.OpAction, URL: other.URL + "/x"}); out != protocol.OutcomeSuccess {
		t.Errorf("call elsewhere: %v %q", out, msg)
	}
}
