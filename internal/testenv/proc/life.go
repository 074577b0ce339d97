package proc

import (
	"context"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
)

// Life is one run of the coordinator over a data directory, for tests that
// crash it and start it again on the same data.
type Life struct {
	T      *testing.T
	Dir    string
	Srv    *Server
	Client *client.Client

	flags   []string
	timeout time.Duration
}

// StartLife starts `concord serve` on dir with the failpoints armed (none
// if empty) and flags; timeout bounds ExpectCrash and WaitSettled.
func StartLife(t *testing.T, dir, failpoints string, timeout time.Duration, flags ...string) *Life {
	t.Helper()
	srv := StartArmed(t, dir, failpoints, flags...)
	return &Life{T: t, Dir: dir, Srv: srv, Client: client.New(srv.URL), flags: flags, timeout: timeout}
}

// Restart starts a new coordinator on the same data directory and flags,
// with no failpoint armed. The old process must be gone.
func (l *Life) Restart() *Life {
	l.T.Helper()
	if !l.Dead() {
		l.T.Fatal("restart: the previous coordinator is still running")
	}
	return StartLife(l.T, l.Dir, "", l.timeout, l.flags...)
}

// ExpectCrash waits for the process to kill itself at the named failpoint.
func (l *Life) ExpectCrash(point string) {
	l.T.Helper()
	l.Srv.ExpectCrash(l.T, point, l.timeout)
}

// Dead reports whether the process has exited.
func (l *Life) Dead() bool {
	select {
	case <-l.Srv.Exited():
		return true
	default:
		return false
	}
}

// WaitSettled waits until gid is final or stuck and returns it.
func (l *Life) WaitSettled(gid string) *client.Transaction {
	l.T.Helper()
	ctx, cancel := context.WithTimeout(l.T.Context(), l.timeout)
	defer cancel()
	tx, err := l.Client.Wait(ctx, gid)
	if err != nil {
		l.T.Fatalf("wait %s: %v", gid, err)
	}
	return tx
}
