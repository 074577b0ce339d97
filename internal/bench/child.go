package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	storeopen "github.com/concordtm/concord/internal/store/open"
)

// readyTimeout bounds how long a child coordinator may take to print its
// ready line (generous: it may start on a busy machine).
const readyTimeout = 60 * time.Second

// readyPrefix starts the line `concord serve` prints on stdout once it
// accepts connections; the URL follows.
const readyPrefix = "concord listening on "

// child is a coordinator run as a separate process, on a data directory of
// its own that stop removes.
type child struct {
	cmd    *exec.Cmd
	dir    string
	url    string
	stderr *tail
	exited chan struct{} // closed once the process has exited and been reaped
	once   sync.Once
}

// startChild runs `binary serve` on a free loopback port and a fresh
// temporary data directory, and waits for its ready line. On error nothing
// is left behind.
func startChild(ctx context.Context, binary string, extra ...string) (_ *child, err error) {
	dir, err := os.MkdirTemp("", "concord-bench-")
	if err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	c := &child{dir: dir, stderr: &tail{max: 4 << 10}, exited: make(chan struct{})}
	c.cmd = exec.Command(binary, append([]string{"serve", "-addr", "127.0.0.1:0", "-data-dir", dir, "-log-level", "warn"}, extra...)...)
	c.cmd.Env = withoutConcordVars(os.Environ())
	c.cmd.Stdout = &readyLine{ready: ready}
	c.cmd.Stderr = c.stderr
	c.cmd.WaitDelay = time.Second
	setParentDeathSignal(c.cmd)
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start coordinator: %w", err)
	}
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case u := <-ready:
		c.url = u
		return c, nil
	case <-c.exited:
		return nil, fmt.Errorf("coordinator exited before it was ready (%v); its stderr:\n%s", c.cmd.ProcessState, c.stderr)
	case <-timer.C:
		return nil, fmt.Errorf("coordinator not ready after %v; its stderr:\n%s", readyTimeout, c.stderr)
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// pid returns the process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// stop kills the process (SIGKILL: nothing of its state is kept), reaps it
// and removes its data directory. It may be called more than once.
func (c *child) stop() {
	c.once.Do(func() {
		select {
		case <-c.exited:
		default:
			c.cmd.Process.Kill()
			<-c.exited
		}
		os.RemoveAll(c.dir)
	})
}

// withoutConcordVars drops CONCORD_* variables, so that the child runs with
// built-in defaults and the flags given (a CONCORD_TOKEN meant for another
// coordinator would otherwise make every call fail).
func withoutConcordVars(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "CONCORD_") {
			out = append(out, kv)
		}
	}
	return out
}

// readyLine is the child's stdout: it sends the URL of the first ready
// line and discards everything else.
type readyLine struct {
	ready chan<- string
	line  []byte
	found bool
}

func (r *readyLine) Write(p []byte) (int, error) {
	if r.found {
		return len(p), nil
	}
	r.line = append(r.line, p...)
	for {
		i := bytes.IndexByte(r.line, '\n')
		if i < 0 {
			break
		}
		if u, ok := strings.CutPrefix(string(r.line[:i]), readyPrefix); ok {
			r.found, r.line = true, nil
			r.ready <- strings.TrimSpace(u)
			break
		}
		r.line = r.line[i+1:]
	}
	if len(r.line) > 4<<10 {
		r.line = r.line[len(r.line)-(4<<10):] // a runaway line without newline
	}
	return len(p), nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// freshNamespace returns raw with a namespace of its own added (a table
// prefix for SQL stores, a key namespace for Redis), and a function that
// drops what the run stored there.
func freshNamespace(ctx context.Context, raw string) (string, func(), error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", nil, fmt.Errorf("store %q: %v", raw, err)
	}
	var b [4]byte
	rand.Read(b[:])
	name := "bench_" + hex.EncodeToString(b[:])
	q := u.Query()
	switch u.Scheme {
	case "postgres", "postgresql", "mysql":
		q.Set("table_prefix", name+"_")
	case "redis", "rediss":
		q.Set("namespace", name)
	default:
		return "", nil, fmt.Errorf("store %q: want a postgres://, mysql:// or redis:// URL", u.Redacted())
	}
	u.RawQuery = q.Encode()
	fresh := u.String()
	st, err := storeopen.OpenWith(ctx, fresh, storeopen.Options{Migrate: true})
	if err != nil {
		return "", nil, err
	}
	cleanup := func() {
		defer st.Close()
		if d, ok := st.(interface{ Drop(context.Context) error }); ok {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d.Drop(ctx)
		}
	}
	return fresh, cleanup, nil
}
