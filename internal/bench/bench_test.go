package bench

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/server"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant/xa"
)

// checkResult asserts what every successful short run must show. It is a
// functional check of the tool, not a performance assertion.
func checkResult(t *testing.T, r Result, mode string) {
	t.Helper()
	t.Logf("%+v", r)
	if r.Mode != mode || r.Concurrency != 4 {
		t.Errorf("mode %q, concurrency %d; want %q, 4", r.Mode, r.Concurrency, mode)
	}
	if r.Count <= 0 {
		t.Errorf("count = %d, want > 0", r.Count)
	}
	if r.Errors != 0 {
		t.Errorf("errors = %d, want 0; first: %s", r.Errors, r.FirstError)
	}
	if !(0 < r.P50Ms && r.P50Ms <= r.P90Ms && r.P90Ms <= r.P99Ms && r.P99Ms <= r.MaxMs) {
		t.Errorf("latencies p50 %v, p90 %v, p99 %v, max %v: want 0 < p50 <= p90 <= p99 <= max", r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
	}
	if r.TPS <= 0 {
		t.Errorf("tps = %v, want > 0", r.TPS)
	}
	if r.Host.CPUs != runtime.NumCPU() || r.Host.Go != runtime.Version() || r.Host.OS == "" {
		t.Errorf("host %+v: want this machine's CPU count, OS and Go release", r.Host)
	}
}

func TestCPUModel(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	intel := write("intel", "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: other\n")
	if got := cpuModel(intel); got != "Intel(R) Xeon(R) Processor" {
		t.Errorf("cpuModel = %q, want the first model name", got)
	}
	arm := write("arm", "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n")
	if got := cpuModel(arm); got != "" {
		t.Errorf("cpuModel without a model name = %q, want empty", got)
	}
	if got := cpuModel(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("cpuModel of a missing file = %q, want empty", got)
	}
}

// buildConcord builds cmd/concord into dir, as the child coordinator.
func buildConcord(t *testing.T, dir string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the concord binary")
	}
	bin := filepath.Join(dir, "concord")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/concordtm/concord/cmd/concord")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// running returns the pids of processes whose executable is bin.
func running(t *testing.T, bin string) []string {
	t.Helper()
	exes, _ := filepath.Glob("/proc/[0-9]*/exe")
	var pids []string
	for _, exe := range exes {
		if target, err := os.Readlink(exe); err == nil && target == bin {
			pids = append(pids, filepath.Base(filepath.Dir(exe)))
		}
	}
	return pids
}

// TestChildProcess drives the path `concord bench` takes without -addr:
// the coordinator is the real binary, started and killed by Run.
func TestChildProcess(t *testing.T) {
	bin := buildConcord(t, t.TempDir())
	procFS := runtime.GOOS == "linux"

	t.Run("run", func(t *testing.T) {
		r, err := Run(t.Context(), Config{Mode: ModeSaga, Concurrency: 4, Duration: time.Second, Warmup: 200 * time.Millisecond, Binary: bin})
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, r, ModeSaga)
		if procFS && (r.RSSMB <= 0 || r.CPUMsPerTx <= 0 || r.RSSAnonMB <= 0 || r.RSSAnonMB > r.RSSMB) {
			t.Errorf("rss %v MiB (anonymous %v), cpu %v ms per transaction: want all measured, anonymous at most the peak", r.RSSMB, r.RSSAnonMB, r.CPUMsPerTx)
		}
		if procFS {
			if pids := running(t, bin); len(pids) > 0 {
				t.Errorf("coordinator still running after Run: pids %v", pids)
			}
		}
	})

	t.Run("stop", func(t *testing.T) {
		c, err := startChild(t.Context(), bin)
		if err != nil {
			t.Fatal(err)
		}
		pid, dir := c.pid(), c.dir
		c.stop()
		c.stop() // idempotent
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("after stop, kill(%d, 0) = %v, want ESRCH", pid, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after stop, data dir %s: %v, want it removed", dir, err)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(500*time.Millisecond, cancel)
		start := time.Now()
		_, err := Run(ctx, Config{Mode: ModeTCC, Concurrency: 4, Duration: time.Hour, Binary: bin})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("Run took %v after a cancel at 500ms", d)
		}
		if procFS {
			if pids := running(t, bin); len(pids) > 0 {
				t.Errorf("coordinator still running after an interrupted Run: pids %v", pids)
			}
		}
	})

	t.Run("bad binary", func(t *testing.T) {
		_, err := Run(t.Context(), Config{Mode: ModeSaga, Concurrency: 1, Duration: time.Second, Binary: "/bin/false"})
		if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
			t.Errorf("Run with /bin/false = %v, want 'exited before it was ready'", err)
		}
	})
}

// startCoordinator runs the coordinator in this process, as `concord
// serve` would, and returns its URL.
func startCoordinator(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(addr string) { ready <- addr })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case addr := <-ready:
		return "http://" + addr
	case err := <-done:
		t.Fatalf("server.Run: %v", err)
	}
	return ""
}

// TestAddr drives the -addr path, against a coordinator in this process.
func TestAddr(t *testing.T) {
	url := startCoordinator(t)
	c := client.New(url)
	for _, mode := range []string{ModeSaga, ModeTCC, ModeTwoPC, ModeThreePC, ModeMsg} {
		t.Run(mode, func(t *testing.T) {
			var progress syncBuf
			prefix := "bt-" + mode + "-"
			r, err := Run(t.Context(), Config{Mode: mode, Concurrency: 4, Duration: time.Second, Warmup: 200 * time.Millisecond, Addr: url,
				GIDPrefix: prefix, Progress: &progress, ProgressEvery: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, r, mode)
			if r.Coordinator != url || r.RSSMB != 0 || r.CPUMsPerTx != 0 || r.RSSAnonMB != 0 {
				t.Errorf("coordinator %q, rss %v, cpu %v: want %q and nothing measured", r.Coordinator, r.RSSMB, r.CPUMsPerTx, url)
			}
			if !strings.Contains(progress.String(), "bench: ") || !strings.Contains(progress.String(), "transactions (") {
				t.Errorf("progress lines: %q", progress.String())
			}
			// The coordinator stays up after the run: every transaction
			// the run started, cut off at the end or not, is finished
			// and succeeded, none left running or stuck, and each one's
			// gid has the prefix.
			var all []*client.Transaction
			for tok := ""; ; {
				page, next, err := c.List(t.Context(), client.ListOptions{GIDPrefix: prefix, Limit: 1000, PageToken: tok})
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, page...)
				if tok = next; tok == "" {
					break
				}
			}
			if len(all) < r.Count {
				t.Errorf("%d transactions with prefix %q, fewer than the %d counted", len(all), prefix, r.Count)
			}
			for _, tx := range all {
				if tx.Status != client.StatusSucceeded {
					t.Errorf("%s is %s after the run, want succeeded", tx.GID, tx.Status)
				}
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		_, err := Run(t.Context(), Config{Mode: ModeSaga, Concurrency: 1, Duration: time.Second, Addr: "http://127.0.0.1:1"})
		if err == nil || !strings.Contains(err.Error(), "does not answer") {
			t.Errorf("Run against a closed port = %v, want 'does not answer'", err)
		}
	})
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // substring of the error; "" for valid
	}{
		{nil, ""},
		{[]string{"--mode", "tcc", "--concurrency", "50", "--duration", "10s", "--warmup", "0s", "--addr", "127.0.0.1:7070"}, ""},
		{[]string{"-mode=saga", "-addr=https://concord.example:443/"}, ""},
		{[]string{"--mode", "xa"}, `mode "xa": want saga, tcc, 2pc, 3pc, 2pc-xa or msg`},
		{[]string{"--mode", "2pc-xa", "--mysql-dsn", "u:p@tcp(db:3306)/x", "--postgres-dsn", "host=db dbname=x"}, ""},
		{[]string{"--mode", "2pc-xa", "--mysql-dsn", "no-slash"}, "mysql-dsn: "},
		{[]string{"--mode", "2pc-xa", "--postgres-dsn", "postgres://h:notaport/x"}, "postgres-dsn: "},
		{[]string{"--mode", "saga", "--mysql-dsn", "no-slash"}, ""}, // ignored outside 2pc-xa
		{[]string{"--concurrency", "0"}, "concurrency 0: must be positive"},
		{[]string{"--concurrency", "-3"}, "concurrency -3: must be positive"},
		{[]string{"--duration", "0s"}, "duration 0s: must be positive"},
		{[]string{"--duration", "-1s"}, "duration -1s: must be positive"},
		{[]string{"--warmup", "-1s"}, "warmup -1s: must not be negative"},
		{[]string{"--addr", "ftp://127.0.0.1:7070"}, "scheme must be http or https"},
		{[]string{"--addr", "http://"}, "no host"},
		{[]string{"--addr", "http://127.0.0.1:port"}, "invalid port"},
		{[]string{"--addr", "http://h:1/?x=1"}, "scheme://host[:port][/path] only"},
	} {
		cfg := Default()
		fs := flag.NewFlagSet("bench", flag.ContinueOnError)
		cfg.RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%q: parse: %v", tc.args, err)
		}
		err := cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want valid", tc.args, err)
		case tc.want != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want ErrConfig with %q", tc.args, err, tc.want)
		}
	}

	// Run refuses a bad Config before starting anything.
	if _, err := Run(t.Context(), Config{Mode: "saga"}); !errors.Is(err, ErrConfig) {
		t.Errorf("Run(zero concurrency and duration) = %v, want ErrConfig", err)
	}
}

func TestParseProc(t *testing.T) {
	// The command field may hold spaces and parentheses.
	stat := "4242 (concord (x) y) S 1 4242 4242 0 -1 4194560 2077 0 0 0 250 37 0 0 20 0 9 0 123 1 2 3\n"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 2870*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 2.87s", cpu, err)
	}
	if _, err := parseStatCPU([]byte("4242 (concord) S 1")); err == nil {
		t.Error("parseStatCPU of a short line: no error")
	}
	status := "Name:\tconcord\nVmPeak:\t 1300000 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   30000 kB\n"
	hwm, err := parseStatusHWM([]byte(status))
	if err != nil || hwm != 40<<20 {
		t.Errorf("parseStatusHWM = %d, %v; want %d", hwm, err, 40<<20)
	}
	if _, err := parseStatusHWM([]byte("Name:\tconcord\n")); err == nil {
		t.Error("parseStatusHWM without VmHWM: no error")
	}
	anon, err := parseStatusKB([]byte(status+"RssAnon:\t   12288 kB\nRssFile:\t   17712 kB\n"), "RssAnon")
	if err != nil || anon != 12<<20 {
		t.Errorf("parseStatusKB(RssAnon) = %d, %v; want %d", anon, err, 12<<20)
	}
}

func TestPercentile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond // unsorted on purpose
	}
	l := summarise(ds)
	if l.p50 != 50*time.Millisecond || l.p90 != 90*time.Millisecond || l.p99 != 99*time.Millisecond || l.max != 100*time.Millisecond {
		t.Errorf("summarise(1..100ms) = %+v", l)
	}
	if l := summarise([]time.Duration{7}); l.p50 != 7 || l.p99 != 7 || l.max != 7 {
		t.Errorf("summarise(one sample) = %+v", l)
	}
	if l := summarise(nil); l != (latencies{}) {
		t.Errorf("summarise(nil) = %+v", l)
	}
}

func TestReadyLine(t *testing.T) {
	ready := make(chan string, 1)
	w := &readyLine{ready: ready}
	for _, chunk := range []string{"noise\nconcord listen", "ing on http://127.0.0.1:4", "242\nlater\n"} {
		w.Write([]byte(chunk))
	}
	select {
	case u := <-ready:
		if u != "http://127.0.0.1:4242" {
			t.Errorf("ready URL %q", u)
		}
	default:
		t.Error("no ready line found")
	}
}

func TestParticipants(t *testing.T) {
	p, err := startParticipants()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	post := func(url string) int {
		resp, err := http.Post(url, "application/json", strings.NewReader(`{"x":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for op := range numOps {
		if code := post(p.url(op)); code != http.StatusOK {
			t.Errorf("POST %s: %d, want 200", p.url(op), code)
		}
		if n := p.count(op); n != 1 {
			t.Errorf("%s answered %d times, want 1", opPaths[op], n)
		}
	}
	if code := post(p.base + "/other"); code != http.StatusNotFound {
		t.Errorf("POST /other: %d, want 404", code)
	}
	resp, err := http.Get(p.url(opAction))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || p.count(opAction) != 1 {
		t.Errorf("GET /action: %d, count %d; want 404 and no call counted", resp.StatusCode, p.count(opAction))
	}
}

// TestMain removes the package's databases (and the private PostgreSQL
// server, if testenv.PostgresXA started one) after the tests.
func TestMain(m *testing.M) { testenv.Main(m) }

// TestXA drives mode 2pc-xa against databases of the test binary's own and
// an in-process coordinator: every committed transaction must have
// incremented one row on each side, and no branch of the run may stay
// prepared.
func TestXA(t *testing.T) {
	my, pg := testenv.MariaDBXA(t), testenv.PostgresXA(t)
	url := startCoordinator(t)
	cfg := Config{Mode: ModeTwoPCXA, Concurrency: 4, Duration: time.Second, Warmup: 200 * time.Millisecond, Addr: url,
		MySQLDSN: testenv.MariaDBXADSN(t), PostgresDSN: testenv.PostgresXADSN(t)}
	r, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, ModeTwoPCXA)
	x := r.xa
	t.Logf("committed %d (counted %d), row sums: mariadb %d, postgres %d", x.committed, r.Count, x.mysqlSum, x.pgSum)
	if x.committed < int64(r.Count) {
		t.Errorf("committed %d < counted %d", x.committed, r.Count)
	}
	if x.mysqlSum+x.pgSum != 2*x.committed || x.mysqlSum != x.pgSum {
		t.Errorf("row sums mariadb %d + postgres %d, want %d each (2 × %d committed)", x.mysqlSum, x.pgSum, x.committed, x.committed)
	}
	if !strings.HasPrefix(x.prefix, "bxa-") {
		t.Fatalf("gid prefix %q", x.prefix)
	}
	for _, s := range []struct {
		db *sql.DB
		d  xa.Dialect
	}{{my, xa.MySQL}, {pg, xa.Postgres}} {
		list, err := xa.Recover(t.Context(), s.db, s.d)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list {
			if strings.HasPrefix(p.GID, x.prefix) {
				t.Errorf("%v: branch %s still prepared after the run", s.d, p.XID)
			}
		}
		var n int
		if err := s.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+xa.MarkerTable+" WHERE gid LIKE '"+x.prefix+"%'").Scan(&n); err != nil || n != 0 {
			t.Errorf("%v: %d marker rows of the run left (%v), want 0", s.d, n, err)
		}
		table := "bench_xa_" + strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(x.prefix, "bxa-"), "-"), "-", "_")
		if _, err := s.db.ExecContext(t.Context(), "SELECT 1 FROM "+table); err == nil {
			t.Errorf("%v: table %s not dropped", s.d, table)
		}
	}

	t.Run("unreachable", func(t *testing.T) {
		bad := cfg
		bad.MySQLDSN = "root@tcp(127.0.0.1:1)/test"
		_, err := Run(t.Context(), bad)
		if err == nil || errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "does not answer") {
			t.Errorf("Run with MariaDB on a closed port = %v, want 'does not answer'", err)
		}
		bad = cfg
		bad.PostgresDSN = "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"
		_, err = Run(t.Context(), bad)
		if err == nil || errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "does not answer") {
			t.Errorf("Run with PostgreSQL on a closed port = %v, want 'does not answer'", err)
		}
	})
}

// syncBuf is a strings.Builder safe for the progress goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
