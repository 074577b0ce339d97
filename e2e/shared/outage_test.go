package shared

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// A store that cannot be reached at start is a clear error and a failed
// start, not a coordinator that accepts work it cannot keep.
func TestStoreUnreachableAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, u := range []string{
		"postgres://postgres@" + addr + "/test?sslmode=disable",
		"redis://" + addr + "/0",
		"mysql://root@" + addr + "/test",
	} {
		_, err := proc.TryStart(t, t.TempDir(), nil, "-store", u)
		if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), addr) {
			t.Errorf("start with %s: %v; want a failed start naming the address as unreachable", u, err)
		}
	}
}

// redisServer is a private redis-server process (AOF with fsync always, so
// that a kill loses nothing it acknowledged), so this test can stop and
// restart a real Redis without disturbing other tests.
type redisServer struct {
	port string
	dir  string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T, port, dir string) *redisServer {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Require(t, "redis-server binary", err)
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--dir", dir, "--save", "",
		"--appendonly", "yes", "--appendfsync", "always", "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &redisServer{port: port, dir: dir, cmd: cmd}
	t.Cleanup(r.kill)
	testenv.Eventually(t, 10*time.Second, "private redis-server answers", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return r
}

func (r *redisServer) kill() {
	if r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// okServer is a participant that accepts every operation.
func okServer(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(s.Close)
	return s.URL
}

// checkOutage submits sagas, takes the store away, checks that requests
// fail fast with a retryable error, brings it back, and checks that
// service resumes and every saga accepted before the outage finishes.
func checkOutage(t *testing.T, storeURL string, down, up func()) {
	srv := proc.Start(t, t.TempDir(), nil, "-store", storeURL, "-lease-ttl", "2s")
	t.Cleanup(func() { srv.CheckLog(t) })
	c := client.New(srv.URL)
	ok := okServer(t)
	var before []string
	for i := range 20 {
		tx, err := c.NewSaga(fmt.Sprintf("pre-%d-%s", i, testenv.UniqueName(t, "o"))).Add(ok, ok, "x").Add(ok, ok, "y").Submit(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, tx.GID)
	}

	down()
	var during []string
	for i := range 5 {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		start := time.Now()
		gid := fmt.Sprintf("during-%d-%s", i, testenv.UniqueName(t, "o"))
		during = append(during, gid)
		_, err := c.NewSaga(gid).Add(ok, ok, "x").Submit(ctx)
		cancel()
		took := time.Since(start)
		if !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("submit while the store is down: %v (after %v); want ErrUnavailable", err, took)
		}
		if took > 10*time.Second {
			t.Errorf("submit while the store is down took %v to fail; want fast", took)
		}
	}
	up()

	var after string
	testenv.Eventually(t, 30*time.Second, "service resumes after the store returns", func() bool {
		tx, err := c.NewSaga("").Add(ok, ok, "x").Submit(t.Context())
		if err == nil {
			after = tx.GID
		}
		return err == nil
	})
	// A refused submission left nothing behind.
	for _, gid := range during {
		if _, err := c.Get(t.Context(), gid); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("%s was refused during the outage but Get says %v", gid, err)
		}
	}
	for _, gid := range append(before, after) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		tx, err := c.Wait(ctx, gid)
		cancel()
		if err != nil || tx.Status != client.StatusSucceeded {
			t.Fatalf("%s after the outage: %v %v", gid, tx.GetStatus(), err)
		}
	}
}

func TestRedisStoreOutage(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	r := startRedis(t, port, dir)
	checkOutage(t, "redis://127.0.0.1:"+port+"/0?namespace=outage", func() { r.kill() }, func() { r = startRedis(t, port, dir) })
}

// TestPostgresStoreOutage runs a private PostgreSQL server (initdb into a
// temporary directory, as the postgres user), so that the test can stop it
// (immediate shutdown: a crash, recovered from its WAL at the next start)
// and start it again without disturbing the tests that share the machine's
// server.
func TestPostgresStoreOutage(t *testing.T) {
	pg := startPrivatePostgres(t)
	u := "postgres://postgres@127.0.0.1:" + pg.port + "/postgres?sslmode=disable"
	checkOutage(t, u, pg.stop, pg.start)
}

// TestPostgresStoreOutageProxy takes the machine's PostgreSQL away through a
// proxy that drops every connection (a network cut rather than a crash).
func TestPostgresStoreOutageProxy(t *testing.T) {
	testenv.Postgres(t)
	pgAddr := "127.0.0.1:5432"
	if u := testenv.PostgresDSN(); strings.HasPrefix(u, "postgres://") {
		if h := strings.SplitN(strings.SplitN(strings.TrimPrefix(u, "postgres://"), "/", 2)[0], "@", 2); len(h) == 2 {
			pgAddr = h[1]
		}
	}
	p := newProxy(t, pgAddr)
	prefix := testenv.UniqueName(t, "out") + "_"
	u := "postgres://postgres@" + p.addr + "/test?sslmode=disable&table_prefix=" + prefix
	t.Cleanup(func() { drop(withParam(testenv.PostgresDSN(), "table_prefix="+prefix)) })
	checkOutage(t, u, p.stop, p.start)
}

type privatePostgres struct {
	t        *testing.T
	bin, dir string
	port     string
	sockDir  string
}

// startPrivatePostgres initdb's and starts a PostgreSQL server of its own on
// a free port, stopped when the test ends.
func startPrivatePostgres(t *testing.T) *privatePostgres {
	bin := ""
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(dirs) > 0 {
		bin = dirs[len(dirs)-1]
	}
	runuser, err := exec.LookPath("runuser")
	if bin == "" || err != nil {
		testenv.Require(t, "PostgreSQL server binaries (initdb, pg_ctl) and runuser", errors.New("not found"))
	}
	base, err := os.MkdirTemp("", "concord-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	p := &privatePostgres{t: t, bin: bin, dir: filepath.Join(base, "data"), sockDir: base, port: freePort(t)}
	if out, err := exec.Command("chown", "postgres", base).CombinedOutput(); err != nil {
		testenv.Require(t, "a postgres user to run a private server", fmt.Errorf("%v: %s", err, out))
	}
	p.as(runuser, "initdb", "-D", p.dir, "-A", "trust", "-U", "postgres", "--no-sync")
	p.start()
	t.Cleanup(func() { p.pgctl("stop", "-m", "immediate") })
	return p
}

func (p *privatePostgres) as(runuser, tool string, args ...string) {
	cmd := exec.Command(runuser, append([]string{"-u", "postgres", "--", filepath.Join(p.bin, tool)}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
}

func (p *privatePostgres) pgctl(args ...string) {
	all := append([]string{"-D", p.dir, "-w", "-l", filepath.Join(p.sockDir, "pg.log")}, args...)
	if args[0] == "start" {
		all = append(all, "-o", "-p "+p.port+" -k "+p.sockDir+" -c listen_addresses=127.0.0.1 -c fsync=on")
	}
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, "pg_ctl")}, all...)...)
	if out, err := cmd.CombinedOutput(); err != nil && args[0] == "start" {
		p.t.Fatalf("pg_ctl %v: %v\n%s", args, err, out)
	}
}

// stop shuts the server down at once (no checkpoint): like a crash.
func (p *privatePostgres) stop()  { p.pgctl("stop", "-m", "immediate") }
func (p *privatePostgres) start() { p.pgctl("start") }

// proxy forwards TCP connections to a server; stop closes the listener and
// every connection (the server is gone, as far as its clients can tell),
// start listens again on the same address.
type proxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, addr: "127.0.0.1:" + freePort(t), conns: map[net.Conn]bool{}}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[s] = true, true
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
}

func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}
