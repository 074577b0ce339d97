// Package daemon runs private broker servers for tests that must kill and
// restart the server itself: a nats-server with JetStream, a redis-server
// or a RabbitMQ node, each on free loopback ports with its own data
// directory, so the machine's shared services are not disturbed. A missing binary
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
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	t    testing.TB
	name string
	bin  string
	args []string
	env  []string // extra environment, KEY=VALUE
	// pidFile, if set, names the file where the server writes its pid
	// when the command is a wrapper script: Kill signals that pid.
	pidFile string
	ready   func(ctx context.Context) error
	// readyTimeout bounds Start's wait (default readyTimeout).
	readyTimeout time.Duration
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

// RedisAuth is Redis with a password (requirepass): its URL is
// "redis://:" + password + "@" + Addr.
func RedisAuth(t testing.TB, password string) *Daemon {
	t.Helper()
	bin := lookup(t, "redis-server", "/usr/bin/redis-server")
	port := freePort(t)
	d := &Daemon{t: t, name: "redis-server", bin: bin, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir()}
	d.args = []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", d.Dir, "--requirepass", password,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no", "--daemonize", "no"}
	d.ready = func(ctx context.Context) error { return dial(ctx, d.Addr) }
	d.Start()
	return d
}

// RabbitMQ starts a private RabbitMQ node (its own node name, AMQP and
// distribution ports, data and log directories, no plugins) with the
// default guest user allowed from loopback; its URL is
// "amqp://guest:guest@" + Addr + "/". A node takes 5-15s to boot.
func RabbitMQ(t testing.TB) *Daemon {
	t.Helper()
	bin := lookup(t, "rabbitmq-server (/usr/lib/rabbitmq/bin)", "/usr/lib/rabbitmq/bin/rabbitmq-server")
	amqpPort, distPort := freePort(t), freePort(t)
	dir := t.TempDir()
	d := &Daemon{t: t, name: "rabbitmq-server", bin: bin, Addr: "127.0.0.1:" + strconv.Itoa(amqpPort), Dir: dir,
		pidFile: filepath.Join(dir, "pid")}
	conf := fmt.Sprintf("listeners.tcp.local = %s\nloopback_users = none\n", d.Addr)
	for name, body := range map[string]string{"rabbitmq.conf": conf, "enabled_plugins": "[].\n", "rabbitmq-env.conf": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.env = []string{
		"RABBITMQ_NODENAME=" + fmt.Sprintf("concord-test-%d@localhost", amqpPort),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(amqpPort),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(distPort),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_PID_FILE=" + d.pidFile,
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
	}
	d.ready = func(ctx context.Context) error { return dial(ctx, d.Addr) }
	d.readyTimeout = 60 * time.Second
	d.Start()
	return d
}

// Start runs the server (again, on the same port and directory) and waits
// until it answers. It fails the test if it does not within 20s (60s for
// RabbitMQ).
func (d *Daemon) Start() {
	d.t.Helper()
	d.mu.Lock()
	cmd := exec.Command(d.bin, d.args...)
	if d.env != nil {
		cmd.Env = append(os.Environ(), d.env...)
	}
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
	limit := d.readyTimeout
	if limit == 0 {
		limit = readyTimeout
	}
	ctx, cancel := context.WithTimeout(d.t.Context(), limit)
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
			d.t.Fatalf("%s not ready after %v (%v): %s", d.name, limit, err, d.Output())
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
	if d.pidFile != "" {
		if b, err := os.ReadFile(d.pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.Remove(d.pidFile) // the next run writes its own
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
