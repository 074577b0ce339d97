package bench

import (
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Participant operations the no-op server answers, one path each.
const (
	opAction = iota
	opCompensate
	opTry
	opConfirm
	opCancel
	opTwoPC   // one URL for prepare, commit and abort
	opThreePC // one URL for can-commit, pre-commit, do-commit and abort
	opDeliver
	opCheck
	numOps
)

var opPaths = [numOps]string{"/action", "/compensate", "/try", "/confirm", "/cancel", "/2pc", "/3pc", "/deliver", "/check"}

// participants is an HTTP server whose branch operations succeed at once.
// It must cost as little as possible, since it shares the machine with the
// coordinator under test: a handler drains the body and answers 200 with
// no body, allocating nothing beyond what net/http does.
type participants struct {
	srv   *http.Server
	base  string // http://127.0.0.1:PORT
	calls [numOps]atomic.Int64
	done  chan struct{}
}

// startParticipants listens on a free loopback port and serves until close.
func startParticipants() (*participants, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &participants{base: "http://" + ln.Addr().String(), done: make(chan struct{})}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(p.done)
		// Serve returns ErrServerClosed after close; any other error
		// (a broken listener) makes the coordinator's branch calls fail,
		// and the run reports them as errors.
		p.srv.Serve(ln)
	}()
	return p, nil
}

// url returns the URL of op.
func (p *participants) url(op int) string { return p.base + opPaths[op] }

// ServeHTTP answers every known operation with 200.
func (p *participants) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := -1
	for i, path := range opPaths {
		if r.URL.Path == path {
			op = i
			break
		}
	}
	if op < 0 || r.Method != http.MethodPost {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	io.Copy(io.Discard, r.Body)
	p.calls[op].Add(1)
	w.WriteHeader(http.StatusOK)
}

// count returns how many calls of op were answered.
func (p *participants) count(op int) int64 { return p.calls[op].Load() }

// close stops the server and its connections.
func (p *participants) close() {
	p.srv.Close()
	<-p.done
}
