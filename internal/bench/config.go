package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// Workload modes.
const (
	// ModeSaga: each transaction is a saga of two no-op branches, submitted
	// with SubmitAndWait (one API call that returns the final outcome).
	ModeSaga = "saga"
	// ModeTCC: each transaction is RunTCC with two branches: begin,
	// register and try each branch, commit and wait.
	ModeTCC = "tcc"
	// ModeTwoPC: each transaction is a two-phase commit with two HTTP
	// participants that vote yes at once, submitted with SubmitAndWait.
	ModeTwoPC = "2pc"
	// ModeThreePC: each transaction is a three-phase commit with two HTTP
	// participants that answer every phase at once, submitted with
	// SubmitAndWait.
	ModeThreePC = "3pc"
	// ModeTwoPCXA: each transaction is a two-phase commit with two XA
	// branches (package participant/xa) served by this process, one on
	// MariaDB/MySQL and one on PostgreSQL, each incrementing one random
	// row of a table of its own, submitted with SubmitAndWait.
	ModeTwoPCXA = "2pc-xa"
	// ModeMsg: each transaction is a transactional message to two HTTP
	// consumers: prepare, a no-op local transaction, submit and wait until
	// both consumers have it (delivery included in the latency).
	ModeMsg = "msg"
)

// ErrConfig wraps every problem Validate finds.
var ErrConfig = errors.New("bench: invalid configuration")

// Config is one benchmark run; see Validate for what Run accepts.
type Config struct {
	Mode        string        // ModeSaga, ModeTCC, ModeTwoPC, ModeThreePC, ModeTwoPCXA or ModeMsg
	Concurrency int           // workers, each running one transaction at a time
	Duration    time.Duration // measured period
	Warmup      time.Duration // period before it whose transactions are not counted
	// Addr is the URL of a running coordinator. Empty: Run starts one as a
	// child process and stops it at the end.
	Addr string
	// Binary is the concord executable started for the child coordinator;
	// empty means this process's own executable.
	Binary string
	// MySQLDSN and PostgresDSN are the databases of ModeTwoPCXA
	// (go-sql-driver/mysql and pgx syntax); other modes ignore them.
	MySQLDSN    string
	PostgresDSN string
	// Store, if set, is a shared store URL (postgres://, mysql://,
	// redis://) for the child coordinators, which get a fresh namespace in
	// it (dropped at the end). Coordinators is how many children share it
	// (0 or 1: one); workers take turns among them.
	Store        string
	Coordinators int
	// StoreAsIs uses Store's namespace as given (for a store filled
	// beforehand) instead of a fresh one; nothing is dropped.
	StoreAsIs bool
	// PollDashboard adds the load of an open dashboard and a metrics
	// scraper: ListTransactions and GET /metrics every second.
	PollDashboard bool
	// GIDPrefix starts every gid the run submits, so that its transactions
	// can be told apart on a coordinator that serves other work (tx list
	// -prefix). Empty: "bench-" and six random characters.
	GIDPrefix string
	// Progress, if set, gets a line every ProgressEvery (default 5s)
	// while the run lasts.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// Default returns the configuration `concord bench` runs without flags.
func Default() Config {
	return Config{Mode: ModeSaga, Concurrency: 10, Duration: 10 * time.Second, Warmup: 2 * time.Second, Coordinators: 1,
		MySQLDSN: DefaultMySQLDSN, PostgresDSN: DefaultPostgresDSN}
}

// RegisterFlags defines the -mode, -concurrency, -duration, -warmup,
// -addr, -mysql-dsn and -postgres-dsn flags on fs, with c's current values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Mode, "mode", c.Mode, "workload: saga (2-branch saga, submit and wait), tcc (2-branch TCC, commit and wait) 2pc (2 HTTP participants, submit and wait), 3pc (likewise, three phases), 2pc-xa (2 XA branches, MariaDB and PostgreSQL, submit and wait) or msg (prepare, local no-op, submit, wait for 2 HTTP consumers)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "workers, each running one transaction at a time")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "measured period")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "warm-up period before it, not counted")
	fs.StringVar(&c.Addr, "addr", c.Addr, "`url` of a running coordinator; empty starts 'concord serve' as a child process on a temporary data directory")
	fs.StringVar(&c.Store, "store", c.Store, "shared store `url` (postgres://, mysql://, redis://) for the child coordinators, in a fresh namespace; empty: each child's own embedded store")
	fs.BoolVar(&c.StoreAsIs, "store-as-is", c.StoreAsIs, "use -store's namespace as given (e.g. a store filled beforehand) instead of a fresh one, and keep it")
	fs.IntVar(&c.Coordinators, "coordinators", c.Coordinators, "child coordinators sharing -store; workers take turns among them")
	fs.StringVar(&c.GIDPrefix, "gid-prefix", c.GIDPrefix, "start every gid with this `prefix` (letters, digits, . _ : -); default bench- and six random characters")
	fs.BoolVar(&c.PollDashboard, "poll-dashboard", c.PollDashboard, "also list transactions and scrape /metrics every second, as an open dashboard and Prometheus would")
	fs.StringVar(&c.MySQLDSN, "mysql-dsn", c.MySQLDSN, "MariaDB/MySQL `dsn` (go-sql-driver syntax) of mode 2pc-xa")
	fs.StringVar(&c.PostgresDSN, "postgres-dsn", c.PostgresDSN, "PostgreSQL `dsn` (URL or key=value) of mode 2pc-xa")
}

// Validate reports every problem at once, in one error wrapping ErrConfig.
// An Addr without a scheme is taken as http://.
func (c Config) Validate() error {
	var errs []string
	switch c.Mode {
	case ModeSaga, ModeTCC, ModeTwoPC, ModeThreePC, ModeMsg:
	case ModeTwoPCXA:
		errs = append(errs, validateDSNs(c)...)
	default:
		errs = append(errs, fmt.Sprintf("mode %q: want %s, %s, %s, %s, %s or %s", c.Mode, ModeSaga, ModeTCC, ModeTwoPC, ModeThreePC, ModeTwoPCXA, ModeMsg))
	}
	if c.Coordinators < 0 {
		errs = append(errs, fmt.Sprintf("coordinators %d: must be at least 1", c.Coordinators))
	}
	if c.Coordinators > 1 && c.Store == "" {
		errs = append(errs, "coordinators > 1 needs -store: several coordinators share one store")
	}
	if (c.Store != "" || c.Coordinators > 1) && c.Addr != "" {
		errs = append(errs, "store and coordinators are for child coordinators; not with -addr")
	}
	for _, r := range c.GIDPrefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r)) {
			errs = append(errs, fmt.Sprintf("gid prefix %q: use letters, digits and . _ : -", c.GIDPrefix))
			break
		}
	}
	if len(c.GIDPrefix) > 64 {
		errs = append(errs, fmt.Sprintf("gid prefix %q: at most 64 bytes", c.GIDPrefix))
	}
	if c.Concurrency <= 0 {
		errs = append(errs, fmt.Sprintf("concurrency %d: must be positive", c.Concurrency))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Sprintf("duration %v: must be positive", c.Duration))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Sprintf("warmup %v: must not be negative", c.Warmup))
	}
	if c.Addr != "" {
		if _, err := coordinatorURL(c.Addr); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrConfig, strings.Join(errs, "; "))
}

// coordinatorURL checks addr and returns it as a base URL without a
// trailing slash.
func coordinatorURL(addr string) (string, error) {
	raw := addr
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("addr %q: %v", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("addr %q: scheme must be http or https", addr)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("addr %q: no host", addr)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("addr %q: want scheme://host[:port][/path] only", addr)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}
