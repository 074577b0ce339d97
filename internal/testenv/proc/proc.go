// Package proc runs the real concord binary as a separate process for
// end-to-end and crash tests: build it once, start `concord serve` on a
// free loopback port, kill it with SIGKILL, restart it on the same data.
package proc

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// build is one way of building ./cmd/concord, done once per test process.
type build struct {
	once sync.Once
	path string
	err  error
	tags string // build tags ("" for none)
}

var (
	// testBuild has the failpoint hook (internal/failpoint): what every
	// test runs.
	testBuild = &build{tags: "failpoints"}
	// releaseBuild is built as a release is: without test-only hooks.
	releaseBuild = &build{}
)

// Binary builds ./cmd/concord for tests once per test process and returns
// its path. It is built with the build tag failpoints, so that
// CONCORD_FAILPOINTS works (StartArmed); a release build ignores it.
func Binary(t testing.TB) string {
	t.Helper()
	return testBuild.binary(t)
}

// ReleaseBinary builds ./cmd/concord as a release is built (no build tags,
// so no failpoint hook), once per test process, and returns its path.
func ReleaseBinary(t testing.TB) string {
	t.Helper()
	return releaseBuild.binary(t)
}

func (b *build) binary(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "concord-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "concord")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		args := []string{"build", "-o", b.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		if b.tags != "" {
			args = append(args, "-tags", b.tags)
		}
		cmd := exec.Command("go", append(args, "./cmd/concord")...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Server is one running `concord serve` process.
type Server struct {
	URL     string
	DataDir string
	args    []string
	pid     int
	cmd     *exec.Cmd
	stderr  *syncBuffer
	exited  chan struct{}
	state   *os.ProcessState

	checked sync.Mutex
	failed  bool // CheckLog has failed the test already
}

// Start runs `concord serve -addr 127.0.0.1:0 -data-dir dataDir args...`
// with extra environment variables (KEY=VALUE) and waits for its ready
// line. When the test ends the process is killed and its log checked: a
// data race (the binary is race-built when the test is, see race.go), a
// panic or a fatal error it logged fails the test, with the report.
func Start(t testing.TB, dataDir string, env []string, args ...string) *Server {
	t.Helper()
	s, err := TryStart(t, dataDir, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TryStart is Start returning an error instead of failing the test. The
// process's log is checked at cleanup as Start's is, even if it never got
// ready.
func TryStart(t testing.TB, dataDir string, env []string, args ...string) (*Server, error) {
	return tryStart(t, Binary(t), dataDir, env, args...)
}

// StartRelease is Start with the release build (ReleaseBinary).
func StartRelease(t testing.TB, dataDir string, env []string, args ...string) *Server {
	t.Helper()
	s, err := tryStart(t, ReleaseBinary(t), dataDir, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tryStart(t testing.TB, bin, dataDir string, env []string, args ...string) (*Server, error) {
	full := append([]string{"serve", "-addr", "127.0.0.1:0", "-data-dir", dataDir, "-log-level", "warn"}, args...)
	cmd := exec.Command(bin, full...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s := &Server{DataDir: dataDir, args: full, cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.pid = cmd.Process.Pid
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, "concord listening on "); ok {
				select {
				case ready <- u:
				default:
				}
			}
		}
	}()
	go func() {
		cmd.Wait()
		s.state = cmd.ProcessState
		close(s.exited)
	}()
	// Kill first: once the process has exited, its whole log is in.
	t.Cleanup(func() { s.Kill(); s.CheckLog(t) })
	select {
	case u := <-ready:
		s.URL = u
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("concord serve exited before ready: %v\nstderr:\n%s", s.state, s.stderr.String())
	case <-time.After(60 * time.Second):
		s.Kill()
		return nil, fmt.Errorf("concord serve not ready after 60s\nstderr:\n%s", s.stderr.String())
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (s *Server) Kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// Stop sends SIGTERM and waits for a clean exit.
func (s *Server) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.Kill()
	}
}

// Exited is closed when the process has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// WaitExit waits until the process exits or ctx ends, and reports whether
// it died of SIGKILL (as a failpoint does).
func (s *Server) WaitExit(ctx context.Context) (killed bool, err error) {
	select {
	case <-s.exited:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	ws, ok := s.state.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, nil
}

// Stderr returns what the process logged so far.
func (s *Server) Stderr() string { return s.stderr.String() }

// Pid returns the process id.
func (s *Server) Pid() int { return s.pid }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// StartArmed starts the server like Start with the named failpoints armed
// (CONCORD_FAILPOINTS; none if empty).
func StartArmed(t testing.TB, dataDir, failpoints string, args ...string) *Server {
	t.Helper()
	return Start(t, dataDir, []string{"CONCORD_FAILPOINTS=" + failpoints}, args...)
}

// ExpectCrash waits (at most timeout) for the process to kill itself at
// the named failpoint, and fails the test otherwise.
func (s *Server) ExpectCrash(t testing.TB, point string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	killed, err := s.WaitExit(ctx)
	if err != nil {
		t.Fatalf("failpoint %s never fired: %v\nstderr:\n%s", point, err, s.Stderr())
	}
	if !killed || !strings.Contains(s.Stderr(), "failpoint: "+point+": SIGKILL") {
		t.Fatalf("coordinator did not die of SIGKILL at %s\nstderr:\n%s", point, s.Stderr())
	}
}

// CheckLog fails the test if the process logged a data race, a panic or a
// fatal error so far, quoting the reports. Start calls it when the test
// ends; a test may call it earlier too. It fails the test at most once per
// process.
func (s *Server) CheckLog(t testing.TB) {
	t.Helper()
	s.checked.Lock()
	defer s.checked.Unlock()
	if s.failed {
		return
	}
	if msg := CheckOutput(s.Stderr()); msg != "" {
		s.failed = true
		t.Errorf("concord %s (pid %d) %s", strings.Join(s.args, " "), s.Pid(), msg)
	}
}
