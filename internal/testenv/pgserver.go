//go:build unix

package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A pgServer is a private PostgreSQL server: initdb into a temporary
// directory, then postgres on a free loopback port, with settings the
// machine's server may lack (max_prepared_transactions). It serves one test
// binary and is stopped, its directory removed, by stop.
type pgServer struct {
	dir    string // the base directory: data/, the socket, postgres.log
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
}

// pgTempPrefix starts the name of every private server's directory in
// os.TempDir(), so that a later run can sweep the ones a killed binary left.
const pgTempPrefix = "concord-pgxa-"

// pgStartTimeout bounds initdb plus the server's start.
const pgStartTimeout = 60 * time.Second

// pgSettings are the private server's settings: prepared transactions on,
// room for the connection pools of a whole test binary, and no fsync (the
// server is thrown away; no test crashes it).
var pgSettings = []string{
	"max_prepared_transactions=100",
	"max_connections=200",
	"fsync=off",
	"synchronous_commit=off",
	"full_page_writes=off",
}

// errNoPostgresBinaries is returned when no initdb/postgres is installed.
var errNoPostgresBinaries = errors.New("no PostgreSQL server binaries (initdb, postgres) under /usr/lib/postgresql/*/bin or in PATH (or set " + EnvPostgresBin + ")")

// postgresBinGlob is where Debian installs each PostgreSQL version's
// server binaries (a variable for the tests).
var postgresBinGlob = "/usr/lib/postgresql/*/bin"

// EnvPostgresBin names the directory of initdb and postgres for the private
// server, where they are neither under /usr/lib/postgresql nor in PATH.
const EnvPostgresBin = "CONCORD_TEST_POSTGRES_BIN"

// postgresBinDir returns the directory of initdb and postgres:
// $CONCORD_TEST_POSTGRES_BIN, else the newest
// /usr/lib/postgresql/<version>/bin (Debian's layout) that has both, else
// the directory of initdb in PATH.
func postgresBinDir() (string, error) {
	has := func(dir string) bool {
		return executable(filepath.Join(dir, "initdb")) && executable(filepath.Join(dir, "postgres"))
	}
	if dir := os.Getenv(EnvPostgresBin); dir != "" {
		if !has(dir) {
			return "", fmt.Errorf("%s=%s has no initdb and postgres", EnvPostgresBin, dir)
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob(postgresBinGlob)
	version := func(dir string) float64 { // .../postgresql/15/bin → 15
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) < version(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if has(dirs[i]) {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errNoPostgresBinaries
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// postgresCredential returns the user the server runs as: nil (this
// process's user) unless this process is root, which initdb and postgres
// refuse; then the postgres user.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and initdb refuses root, but there is no postgres user to run the server as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// startPostgres initdb's a new cluster in a temporary directory and starts
// a server on a free loopback port with pgSettings plus extra ("name=value").
// The server gets SIGQUIT (immediate shutdown) if this process dies without
// stopping it (Linux). Errors say what failed, with the tool's output.
func startPostgres(ctx context.Context, binDir string, extra ...string) (*pgServer, error) {
	ctx, cancel := context.WithTimeout(ctx, pgStartTimeout)
	defer cancel()
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	sweepPostgresDirs()
	base, err := os.MkdirTemp("", pgTempPrefix)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*pgServer, error) {
		os.RemoveAll(base)
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(base, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(base, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = base
	initdb.SysProcAttr = pgProcAttr(cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb in %s: %v\n%s", data, err, out))
	}
	settings := append(append([]string{}, pgSettings...), extra...)
	for attempt := 1; ; attempt++ {
		s, err := runPostgres(ctx, binDir, base, cred, settings)
		if err == nil {
			return s, nil
		}
		// Another process may have taken the port between freePort and
		// the bind: try another one.
		if attempt == 3 || !strings.Contains(err.Error(), "could not bind") && !strings.Contains(err.Error(), "could not create any TCP/IP sockets") {
			return fail(err)
		}
	}
}

func runPostgres(ctx context.Context, binDir, base string, cred *syscall.Credential, settings []string) (*pgServer, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(base, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{"-D", filepath.Join(base, "data"), "-p", strconv.Itoa(port), "-k", base, "-h", "127.0.0.1"}
	for _, kv := range settings {
		args = append(args, "-c", kv)
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
	cmd.Dir = base
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = pgProcAttr(cred)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &pgServer{dir: base, port: port, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(s.exited) }()
	logTail := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	db, err := sql.Open("pgx", s.dsn("postgres")+"&connect_timeout=2")
	if err != nil {
		s.stop()
		return nil, err
	}
	defer db.Close()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := db.PingContext(pctx)
		pcancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("postgres exited before it was ready (%v):\n%s", cmd.ProcessState, logTail())
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("postgres on port %d not ready after %v (%v):\n%s", port, pgStartTimeout, err, logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dsn returns the URL of database db on the server, as user postgres.
func (s *pgServer) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// stop shuts the server down (fast shutdown: clients are disconnected,
// open transactions rolled back; SIGKILL after 15s) and removes its
// directory.
func (s *pgServer) stop() error {
	var err error
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		err = fmt.Errorf("private PostgreSQL in %s ignored SIGINT for 15s; killed", s.dir)
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

// sweepPostgresDirs removes the directories of private servers whose test
// binary died without stopping them (a test timeout, ^C): older than ten
// minutes, with no live postmaster. Errors are ignored: sweeping is a
// courtesy.
func sweepPostgresDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pgTempPrefix+"*"))
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil || time.Since(fi.ModTime()) < 10*time.Minute {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
			if pid > 0 && syscall.Kill(pid, 0) != syscall.ESRCH {
				continue // alive (or not ours to signal): leave it
			}
		}
		os.RemoveAll(dir)
	}
}

// freeLoopbackPort returns a loopback port that was free a moment ago.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
