package twopc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/xa"
)

// serverFlags make retries and timeouts short enough for tests, with a
// retry budget large enough that a slow participant under the race
// detector does not make a transaction stuck.
var serverFlags = []string{
	"-retry-initial", "20ms", "-retry-max", "200ms",
	"-branch-timeout", "5s", "-timeout", "30s",
	"-max-attempts", "200", "-max-total-attempts", "2000",
	"-max-wait", "5s",
}

// TestMain removes the package's databases (and the private PostgreSQL
// server, if testenv.PostgresXA started one) after the tests.
func TestMain(m *testing.M) { testenv.Main(m) }

// settleTimeout bounds every wait for the coordinator or a database.
const settleTimeout = 30 * time.Second

// coord is one life of the coordinator process over a data directory.
type coord = proc.Life

// startCoord starts `concord serve` on dir with this package's flags and
// the failpoints armed (none if empty).
func startCoord(t *testing.T, dir, failpoints string) *coord {
	t.Helper()
	return proc.StartLife(t, dir, failpoints, settleTimeout, serverFlags...)
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, timeout, what, cond)
}

// service is a participant in the test process: an HTTP server whose one
// URL is xa.Handler over db, with hooks to hold prepares and to refuse
// phase two.
type service struct {
	t        *testing.T
	name     string // also the branch id
	d        xa.Dialect
	db       *sql.DB // the service's pool
	observer *sql.DB // another pool, for the test's reads
	url      string
	prefix   string   // every gid of the test starts with it
	tables   []string // dropped when the test ends

	mu      sync.Mutex
	hold    chan struct{} // non-nil: prepares wait until it is closed
	arrived chan string   // a held prepare sends its gid

	phase2Down   atomic.Bool  // commit and abort answer 503
	phase2Refuse atomic.Int32 // how many were refused
}

// newService serves work on 127.0.0.1 until the test ends. Its cleanup,
// registered before the coordinator starts, runs after the coordinator is
// killed: it releases held prepares and ends every branch of the test left
// prepared, so that no lock outlives the test.
func newService(t *testing.T, name string, d xa.Dialect, open func(testing.TB) *sql.DB, prefix string, work xa.WorkFunc) *service {
	t.Helper()
	s := &service{t: t, name: name, d: d, db: open(t), observer: open(t), prefix: prefix}
	ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
	defer cancel()
	if err := xa.CreateTable(ctx, s.db, d); err != nil {
		t.Fatal(err)
	}
	h := xa.Handler(s.db, d, work)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := participant.Op(r.Header.Get(participant.HeaderOp))
		if op != participant.OpPrepare && s.phase2Down.Load() {
			s.phase2Refuse.Add(1)
			http.Error(w, s.name+" is down", http.StatusServiceUnavailable)
			return
		}
		if op == participant.OpPrepare {
			s.mu.Lock()
			hold, arrived := s.hold, s.arrived
			s.mu.Unlock()
			if hold != nil {
				select {
				case arrived <- r.Header.Get(participant.HeaderGID):
				case <-r.Context().Done():
					return
				}
				select {
				case <-hold:
				case <-r.Context().Done():
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.release()
		srv.Close()
		s.abortLeftovers()
		s.dropTables()
	})
	s.url = srv.URL
	return s
}

// holdPrepares makes the next prepares wait; it returns the channel on
// which each held prepare announces its gid.
func (s *service) holdPrepares() <-chan string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.arrived = make(chan struct{}), make(chan string, 16)
	return s.arrived
}

// release lets held prepares go on.
func (s *service) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
}

// abortLeftovers rolls back every prepared branch of the test.
func (s *service) abortLeftovers() {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	db := s.openFresh()
	defer db.Close()
	list, err := xa.Recover(ctx, db, s.d)
	if err != nil {
		s.t.Errorf("cleanup: recover on %s: %v", s.name, err)
		return
	}
	for _, p := range list {
		if !strings.HasPrefix(p.GID, s.prefix) {
			continue
		}
		b := participant.Branch{GID: p.GID, BranchID: p.BranchID}
		if err := xa.Abort(ctx, db, s.d, b); err != nil {
			s.t.Errorf("cleanup: abort leftover %s/%s on %s: %v", p.GID, p.BranchID, s.name, err)
		} else {
			s.t.Logf("cleanup: rolled back leftover prepared branch %s/%s on %s", p.GID, p.BranchID, s.name)
		}
	}
}

// createTable creates a business table, dropped when the test ends (after
// the leftover branches, whose locks would block the drop, are ended).
func (s *service) createTable(name, columns string) {
	s.t.Helper()
	ddl := "CREATE TABLE " + name + " (" + columns + ")"
	if s.d == xa.MySQL {
		ddl += " ENGINE=InnoDB"
	}
	s.exec(ddl)
	s.tables = append(s.tables, name)
}

func (s *service) dropTables() {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	for _, table := range s.tables {
		if _, err := s.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
			s.t.Errorf("cleanup: drop %s on %s: %v", table, s.name, err)
		}
	}
}

// openFresh opens a pool that no test cleanup closes (the caller does).
func (s *service) openFresh() *sql.DB {
	driver, dsn := "pgx", testenv.PostgresXADSN(s.t)
	if s.d == xa.MySQL {
		driver, dsn = "mysql", testenv.MariaDBXADSN(s.t)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		s.t.Fatal(err)
	}
	return db
}

// prepared returns the test's branches of gid that are prepared.
func (s *service) prepared(gid string) []xa.Prepared {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), settleTimeout)
	defer cancel()
	list, err := xa.Recover(ctx, s.observer, s.d)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []xa.Prepared
	for _, p := range list {
		if strings.HasPrefix(p.GID, gid) {
			out = append(out, p)
		}
	}
	return out
}

// exec runs a statement through the observer pool.
func (s *service) exec(query string, args ...any) {
	s.t.Helper()
	if _, err := s.observer.ExecContext(s.t.Context(), query, args...); err != nil {
		s.t.Fatalf("%s: %s: %v", s.name, query, err)
	}
}

// queryInt reads one integer through the observer pool.
func (s *service) queryInt(query string, args ...any) int64 {
	s.t.Helper()
	var n int64
	if err := s.observer.QueryRowContext(s.t.Context(), query, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %s: %v", s.name, query, err)
	}
	return n
}

// lockedSession returns a session of its own whose lock waits end after
// wait (PostgreSQL; MariaDB counts in whole seconds, at least one), to be
// closed by the caller; it is discarded, not returned to the pool.
func (s *service) lockedSession(wait time.Duration) *sql.Conn {
	s.t.Helper()
	conn, err := s.observer.Conn(s.t.Context())
	if err != nil {
		s.t.Fatal(err)
	}
	set := fmt.Sprintf("SET lock_timeout = '%dms'", wait.Milliseconds())
	if s.d == xa.MySQL {
		set = fmt.Sprintf("SET SESSION innodb_lock_wait_timeout = %d", max(1, int(wait.Seconds())))
	}
	if _, err := conn.ExecContext(s.t.Context(), set); err != nil {
		conn.Close()
		s.t.Fatal(err)
	}
	return conn
}

// discard closes a session without returning it to the pool.
func discard(conn *sql.Conn) {
	conn.Raw(func(any) error { return errors.New("discard") })
	conn.Close()
}

// updateBlocked runs update in a new session with a short lock timeout and
// reports whether it timed out on a lock.
func (s *service) updateBlocked(update string, args ...any) bool {
	s.t.Helper()
	conn := s.lockedSession(300 * time.Millisecond)
	defer discard(conn)
	_, err := conn.ExecContext(s.t.Context(), update, args...)
	if err != nil && !isLockTimeout(err) {
		s.t.Fatalf("%s: %s: %v", s.name, update, err)
	}
	return err != nil
}

// isLockTimeout reports a lock wait that ran out.
func isLockTimeout(err error) bool {
	var se interface{ SQLState() string }
	if errors.As(err, &se) && se.SQLState() == "55P03" {
		return true
	}
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1205
}
