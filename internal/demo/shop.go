package demo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/twophase"
)

// purchase is the payload every branch of one transaction receives.
type purchase struct {
	Order  int    `json:"order"`
	User   string `json:"user"`
	SKU    string `json:"sku"`
	Qty    int    `json:"qty"`
	Amount int    `json:"amount"`
}

// step is one branch operation's business logic. It runs inside the
// barrier's local transaction and returns what it did, for the console.
type step func(ctx context.Context, tx *sql.Tx, p purchase) (string, error)

// route binds an HTTP path of a service to the one operation it serves.
type route struct {
	path string
	op   participant.Op
	step step
}

// service is one participant: an HTTP server in front of its own SQLite
// database, with a barrier table (saga, TCC) and a 2PC table (twophase)
// next to its business table.
type service struct {
	name     string     // "order", "inventory", "payment"
	table    string     // its business table (its name in snapshots)
	sqlTable string     // the table's name in the database
	where    string     // where the table lives, for the console
	xa       *xaBackend // set when 2PC runs on a real database (participant/xa)
	file     string     // the database file's base name
	path     string     // the database file
	db       *sql.DB
	barrier  *participant.Barrier
	tp       *twophase.Store // prepared 2PC branches
	phases   phases          // the 2PC operations, served at pathTwoPC
	srv      *http.Server
	mux      *http.ServeMux // more handlers may be added while it serves
	url      string         // base URL, e.g. http://127.0.0.1:41234
	out      *console

	mu      sync.Mutex
	done    map[string]bool // forward operations that committed, by gid/branch
	changed chan struct{}   // closed and replaced after every 2PC operation
}

// openService creates dir/<name>.db afresh, applies schema, seeds it and
// starts serving routes on a loopback port.
func openService(ctx context.Context, dir, name, table string, schema []string, routes []route, ph phases, out *console) (*service, error) {
	s := &service{name: name, table: table, file: name + ".db", out: out, done: map[string]bool{},
		phases: ph, changed: make(chan struct{})}
	path := filepath.Join(dir, s.file)
	s.path = path
	s.sqlTable = table
	s.where = filepath.Join(filepath.Base(dir), s.file)
	for _, suffix := range []string{"", "-wal", "-shm"} { // a kept data dir is reset
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	db, err := sql.Open("sqlite", "file:"+path+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	s.db = db
	if s.barrier, err = participant.NewBarrier(db, participant.SQLite); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.barrier.CreateTable(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if s.tp, err = twophase.New(db, participant.SQLite); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.tp.CreateTable(ctx); err != nil {
		db.Close()
		return nil, err
	}
	for _, q := range schema {
		if _, err := db.ExecContext(ctx, q); err != nil {
			db.Close()
			return nil, fmt.Errorf("%s: %w", s.file, err)
		}
	}
	mux := http.NewServeMux()
	for _, r := range routes {
		mux.Handle("POST "+r.path, participant.Handler(s.handle(r)))
	}
	mux.Handle("POST "+pathTwoPC, participant.Handler(s.handleTwoPC()))
	s.mux = mux
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		db.Close()
		return nil, err
	}
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// close stops the server and closes the database.
func (s *service) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	if s.xa != nil {
		s.dropTable() // the pool belongs to the run
		return
	}
	s.db.Close()
}

// snapshot reads the service's business table.
func (s *service) snapshot(ctx context.Context) (Table, error) {
	rows, err := readTable(ctx, s.db, s.sqlTable)
	return Table{DB: s.file, Name: s.table, Rows: rows}, err
}

// stock returns the available quantity of the demo's item (inventory only).
func (s *service) stock(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT qty FROM `+s.sqlTable+` WHERE sku = ?`, sku).Scan(&n)
	return n, err
}

// handle runs r's step for one call from the coordinator (or, for a TCC
// try, from the initiator) inside the barrier, and prints what happened.
func (s *service) handle(r route) participant.HandlerFunc {
	return func(ctx context.Context, b participant.Branch, body []byte) error {
		if b.Op != r.op {
			return fmt.Errorf("%s%s serves %s, got %s", s.name, r.path, r.op, b.Op)
		}
		var p purchase
		if err := json.Unmarshal(body, &p); err != nil {
			return fmt.Errorf("%s%s: payload: %w", s.name, r.path, err)
		}
		var did string
		ran := false
		err := s.barrier.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
			ran = true
			var err error
			did, err = r.step(ctx, tx, p)
			return err
		})
		s.report(b, ran, did, err)
		return err
	}
}

// report prints one line for a handled call.
func (s *service) report(b participant.Branch, ran bool, did string, err error) {
	key := b.GID + "/" + b.BranchID
	s.mu.Lock()
	forward, backward := b.Op.Undoes()
	var msg string
	switch {
	case errors.Is(err, participant.ErrRejected):
		msg = "says NO → " + trimRejected(err)
	case err != nil:
		msg = "error, outcome unknown (retried or rolled back): " + err.Error()
	case ran:
		msg = did
		if !backward {
			s.done[key+"/"+string(b.Op)] = true
		}
	case backward && !s.done[key+"/"+string(forward)]:
		msg = fmt.Sprintf("nothing to undo: the %s never ran here (null compensation, noted by the barrier)", forward)
	default:
		msg = "already done: repeated delivery ignored by the barrier"
	}
	s.mu.Unlock()
	s.out.printf("  %-11s %-11s gid=%s  %s\n", "["+s.name+"]", b.Op, b.GID, msg)
}

// trimRejected drops the "participant: rejected: " prefix of a business no.
func trimRejected(err error) string {
	msg := err.Error()
	prefix := participant.ErrRejected.Error() + ": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}

// console serializes output from concurrent handlers.
type console struct {
	mu   sync.Mutex
	w    io.Writer
	seen map[string]bool // keys once has seen
}

// once reports whether this is the first call with key.
func (c *console) once(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[key] {
		return false
	}
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	c.seen[key] = true
	return true
}

func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, format, args...)
}

// shop is the three services of one run, each with its own database.
type shop struct {
	order, inventory, payment *service

	xa         bool     // order and inventory on real databases (openShopXA)
	gids       []string // the gids of the run, for cleanupXA
	leftovers  int      // prepared branches cleanupXA had to abort
	cleanupErr error    // what cleanupXA reported
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }

// openShop starts the three services with fresh databases in dir.
func openShop(ctx context.Context, dir string, out *console) (*shop, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sh := &shop{}
	var err error
	if sh.order, err = openService(ctx, dir, "order", "orders", orderSchema, orderRoutes, orderPhases, out); err != nil {
		return nil, err
	}
	if sh.inventory, err = openService(ctx, dir, "inventory", "stock", stockSchema, stockRoutes, stockPhases, out); err != nil {
		sh.close()
		return nil, err
	}
	if sh.payment, err = openService(ctx, dir, "payment", "accounts", accountSchema, accountRoutes, accountPhases, out); err != nil {
		sh.close()
		return nil, err
	}
	return sh, nil
}

func (sh *shop) services() []*service {
	var out []*service
	for _, s := range []*service{sh.order, sh.inventory, sh.payment} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

func (sh *shop) close() {
	if sh.xa {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		sh.cleanupErr = sh.cleanupXA(ctx)
		cancel()
	}
	for _, s := range sh.services() {
		s.close()
	}
}

// snapshot reads every service's business table.
func (sh *shop) snapshot(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	for _, s := range sh.services() {
		t, err := s.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		snap = append(snap, t)
	}
	return snap, nil
}
