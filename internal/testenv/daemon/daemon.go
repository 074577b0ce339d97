// Package daemon runs private broker servers for tests that must kill and
// restart the server itself: a nats-server with JetStream or a
// redis-server, each on a free loopback port with its own data directory,
// so the machine's shared services are not disturbed. A missing binary
// skips the test (fails it under CI=true, see testenv.Require).
//
// NewKafka is the Kafka counterpart, in process (franz-go's kfake), with a
// fault of its own: produce responses that vanish after the broker applied
// the request.
package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/testenv"
)

// readyTimeout bounds how long Start waits for the server to answer.
const readyTimeout = 20 * time.Second

// A Daemon is one private server process, restartable on the same port
// and data directory.
type Daemon struct {
	t     testing.TB
	name  string
	bin   string
	args  []string
	ready func(ctx context.Context) error
	// Addr is host:port on loopback.
	Addr string
	// Dir is the server's data directory, kept across restarts.
	Dir string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *bytes.Buffer
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func lookup(t testing.TB, name string, paths ...string) string {
	t.Helper()
	for _, p := range append([]string{name}, paths...) {
		if bin, err := exec.LookPath(p); err == nil {
			return bin
		}
	}
	testenv.Require(t, name+" (binary)", fmt.Errorf("%s not found in PATH or %v", name, paths))
	return ""
}

// NATS starts a private nats-server with JetStream (file storage in its
// own directory). Its client URL is "nats://" + Addr.
func NATS(t testing.TB) *Daemon {
	t.Helper()
	bin := lookup(t, "nats-server", "/usr/sbin/nats-server")
	port := freePort(t)
	d := &Daemon{t: t, name: "nats-server", bin: bin, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir()}
	d.args = []string{"-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", d.Dir, "-m", "0"}
	d.ready = func(ctx context.Context) error { return dial(ctx, d.Addr) }
	d.Start()
	return d
}

// Redis starts a private redis-server whose every write is in its
// append-only file before the reply (appendonly yes, appendfsync
// always), so what it confirmed survives kill -9.
func Redis(t testing.TB) *Daemon {
	t.Helper()
	bin := lookup(t, "redis-server", "/usr/bin/redis-server")
	port := freePort(t)
	d := &Daemon{t: t, name: "redis-server", bin: bin, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir()}
	d.args = []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", d.Dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no", "--daemonize", "no"}
	d.ready = func(ctx context.Context) error { return redisPing(ctx, d.Addr) }
	d.Start()
	return d
}

// Start runs the server (again, on the same port and directory) and waits
// until it answers. It fails the test if it does not within 20s.
func (d *Daemon) Start() {
	d.t.Helper()
	d.mu.Lock()
	cmd := exec.Command(d.bin, d.args...)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: out, mu: &d.mu}, &lockedWriter{w: out, mu: &d.mu}
	if err := cmd.Start(); err != nil {
		d.mu.Unlock()
		d.t.Fatalf("start %s: %v", d.name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	d.cmd, d.exited, d.out = cmd, exited, out
	d.mu.Unlock()
	d.t.Cleanup(d.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		err := d.ready(ctx)
		if err == nil {
			return
		}
		select {
		case <-exited:
			d.t.Fatalf("%s exited before it was ready: %s", d.name, d.Output())
		case <-ctx.Done():
			d.Kill()
			d.t.Fatalf("%s not ready after %v (%v): %s", d.name, readyTimeout, err, d.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (d *Daemon) Kill() {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		d.t.Errorf("%s did not exit 10s after SIGKILL", d.name)
	}
}

// Output returns what the server printed (all runs).
func (d *Daemon) Output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.out == nil {
		return ""
	}
	return d.out.String()
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func dial(ctx context.Context, addr string) error {
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// redisPing succeeds when the server answers PING with PONG (not while it
// is still loading its append-only file).
func redisPing(ctx context.Context, addr string) error {
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}
