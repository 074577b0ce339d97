package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/participant"
)

// call is one request a recorder received.
type call struct {
	Seq    int // order of arrival, shared with Done across the recorder
	Done   int // when the handler returned (0 while it runs)
	Method string
	Path   string
	Header http.Header
	Body   string
}

func (c call) gid() string    { return c.Header.Get(participant.HeaderGID) }
func (c call) branch() string { return c.Header.Get(participant.HeaderBranch) }
func (c call) op() string     { return c.Header.Get(participant.HeaderOp) }
func (c call) mode() string   { return c.Header.Get(participant.HeaderMode) }

// reply decides a recorder's answer to one request. It may block, but must
// give up when r's context ends.
type reply func(r *http.Request) (status int, body string)

func ok(*http.Request) (int, string) { return http.StatusOK, "SUCCESS" }

func fixed(status int, body string) reply {
	return func(*http.Request) (int, string) { return status, body }
}

// hold returns a reply that answers 200 only once release is called (or
// 500 if the request ends first): a participant that is slow for as long
// as the test wants. release is idempotent and runs at cleanup at the
// latest, so a failing test does not leave calls hanging.
func hold(t *testing.T) (fn reply, release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	fn = func(r *http.Request) (int, string) {
		select {
		case <-ch:
			return http.StatusOK, "SUCCESS"
		case <-r.Context().Done():
			return http.StatusInternalServerError, "request ended while held"
		}
	}
	return fn, release
}

// recorder is an in-test participant: an HTTP server that records every
// call with its headers and body, and answers each path as told (200 by
// default).
type recorder struct {
	srv *httptest.Server

	mu     sync.Mutex
	seq    int
	calls  []*call
	routes map[string]reply
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	p := &recorder{routes: map[string]reply{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *recorder) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	p.seq++
	c := &call{Seq: p.seq, Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: string(body)}
	p.calls = append(p.calls, c)
	fn := p.routes[r.URL.Path]
	p.mu.Unlock()
	if fn == nil {
		fn = ok
	}
	status, text := fn(r)
	p.mu.Lock()
	p.seq++
	c.Done = p.seq
	p.mu.Unlock()
	w.WriteHeader(status)
	io.WriteString(w, text)
}

// url returns the absolute URL of path on the recorder.
func (p *recorder) url(path string) string { return p.srv.URL + path }

// on sets how path is answered from now on.
func (p *recorder) on(path string, fn reply) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[path] = fn
}

// received returns copies of the calls so far, in arrival order, to the
// given paths (every path if none is given).
func (p *recorder) received(paths ...string) []call {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []call
	for _, c := range p.calls {
		if len(paths) == 0 || slices.Contains(paths, c.Path) {
			out = append(out, *c)
		}
	}
	return out
}

// count returns how many calls path received.
func (p *recorder) count(path string) int { return len(p.received(path)) }

// only returns the single call path received, failing the test otherwise.
func (p *recorder) only(t *testing.T, path string) call {
	t.Helper()
	cs := p.received(path)
	if len(cs) != 1 {
		t.Fatalf("%s received %d calls, want exactly 1: %v", path, len(cs), paths(p.received()))
	}
	return cs[0]
}

func paths(cs []call) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Path)
	}
	return out
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", timeout, what)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting for %s", what)
		}
	}
}
