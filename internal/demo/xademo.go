package demo

// The 2PC scenarios on real databases: with Options.PostgresDSN and
// Options.MySQLDSN, the order service keeps its table in PostgreSQL and the
// inventory service in MySQL/MariaDB, and both serve 2PC with participant/xa,
// so that each yes vote is a real PREPARE TRANSACTION or XA PREPARE. The
// payment service stays on SQLite with participant/twophase.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/twophase"
	"github.com/concordtm/concord/participant/xa"
)

// ErrXAOptions reports Options.PostgresDSN/MySQLDSN given without each
// other or without the 2pc mode.
var ErrXAOptions = errors.New("demo: invalid database options")

// xaConnectTimeout bounds the connection check of a DSN.
const xaConnectTimeout = 10 * time.Second

// xaDBs is the two real databases of an XA run.
type xaDBs struct {
	pg, my           *sql.DB
	pgLabel, myLabel string // "PostgreSQL", "MariaDB" or "MySQL"
	pgWhere, myWhere string // redacted DSNs, for the console
}

func (x *xaDBs) close() {
	x.pg.Close()
	x.my.Close()
}

// checkXAOptions validates the DSN options against the modes.
func checkXAOptions(o Options, modes []string) error {
	if o.PostgresDSN == "" && o.MySQLDSN == "" {
		return nil
	}
	if o.PostgresDSN == "" || o.MySQLDSN == "" {
		return fmt.Errorf("%w: the PostgreSQL and the MySQL DSN go together", ErrXAOptions)
	}
	if !slices.Contains(modes, ModeTwoPC) {
		return fmt.Errorf("%w: the databases serve the 2pc mode only", ErrXAOptions)
	}
	return nil
}

// openXADBs connects to both databases and checks that they answer.
func openXADBs(ctx context.Context, pgDSN, myDSN string) (*xaDBs, error) {
	x := &xaDBs{pgLabel: "PostgreSQL", pgWhere: redactURL(pgDSN), myWhere: redactMySQL(myDSN)}
	var err error
	if x.pg, err = connect(ctx, "pgx", pgDSN); err != nil {
		return nil, fmt.Errorf("demo: cannot connect to PostgreSQL at %s: %w", x.pgWhere, err)
	}
	var maxPrepared int
	if err := x.pg.QueryRowContext(ctx, `SELECT current_setting('max_prepared_transactions')::int`).Scan(&maxPrepared); err != nil {
		x.pg.Close()
		return nil, fmt.Errorf("demo: PostgreSQL at %s: %w", x.pgWhere, err)
	}
	if maxPrepared == 0 {
		x.pg.Close()
		return nil, fmt.Errorf("demo: PostgreSQL at %s has max_prepared_transactions = 0: it cannot PREPARE TRANSACTION", x.pgWhere)
	}
	if x.my, err = connect(ctx, "mysql", myDSN); err != nil {
		x.pg.Close()
		return nil, fmt.Errorf("demo: cannot connect to MySQL/MariaDB at %s: %w", x.myWhere, err)
	}
	var version string
	if err := x.my.QueryRowContext(ctx, `SELECT VERSION()`).Scan(&version); err != nil {
		x.close()
		return nil, fmt.Errorf("demo: MySQL/MariaDB at %s: %w", x.myWhere, err)
	}
	x.myLabel = "MySQL"
	if strings.Contains(strings.ToLower(version), "mariadb") {
		x.myLabel = "MariaDB"
	}
	return x, nil
}

func connect(ctx context.Context, driver, dsn string) (*sql.DB, error) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, xaConnectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func redactURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "(keyword/value DSN)"
	}
	return u.Redacted()
}

func redactMySQL(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "xxxxx"
	}
	return cfg.FormatDSN()
}

// xaBackend is what a service on a real database needs for 2PC.
type xaBackend struct {
	d       xa.Dialect
	label   string // "PostgreSQL", "MariaDB", "MySQL"
	work    func(ctx context.Context, conn *sql.Conn, p purchase) (string, error)
	hidden  string                                                // what a prepared branch holds, in words
	visible func(ctx context.Context, p purchase) (string, error) // what another session sees meanwhile
	commit  string                                                // what a commit makes visible
	abort   string                                                // what an abort throws away
}

// stmt names the dialect's statement that ends op.
func (x *xaBackend) stmt(op participant.Op) string {
	pg := x.d == xa.Postgres
	switch {
	case op == participant.OpPrepare && pg:
		return "PREPARE TRANSACTION"
	case op == participant.OpPrepare:
		return "XA PREPARE"
	case op == participant.OpCommit && pg:
		return "COMMIT PREPARED"
	case op == participant.OpCommit:
		return "XA COMMIT"
	case pg:
		return "ROLLBACK PREPARED"
	}
	return "XA ROLLBACK"
}

func ph(d xa.Dialect, i int) string {
	if d == xa.Postgres {
		return fmt.Sprintf("$%d", i)
	}
	return "?"
}

func quoteUser(d xa.Dialect) string {
	if d == xa.Postgres {
		return `"user"`
	}
	return "`user`"
}

// randomSuffix returns 6 hex digits for the demo's table names.
func randomSuffix() string {
	var b [3]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// openXAService starts a 2PC-only service whose business table lives in db.
func openXAService(ctx context.Context, db *sql.DB, d xa.Dialect, label, where, name, logical, table string,
	schema []string, mk func(s *service, d xa.Dialect) *xaBackend, out *console) (*service, error) {
	if err := xa.CreateTable(ctx, db, d); err != nil {
		return nil, fmt.Errorf("demo: %s: create the xa tables: %w", label, err)
	}
	s := &service{name: name, table: logical, sqlTable: table, file: label, db: db, out: out,
		done: map[string]bool{}, changed: make(chan struct{}),
		where: fmt.Sprintf("%s %s, table %s", label, where, table)}
	for _, q := range schema {
		if _, err := db.ExecContext(ctx, q); err != nil {
			s.dropTable()
			return nil, fmt.Errorf("demo: %s: %w", label, err)
		}
	}
	s.xa = mk(s, d)
	s.xa.d, s.xa.label = d, label
	mux := http.NewServeMux()
	mux.Handle("POST "+pathTwoPC, participant.Handler(s.handleTwoPC()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.dropTable()
		return nil, err
	}
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// dropTable removes the service's business table from its database.
func (s *service) dropTable() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+s.sqlTable)
}

// orderXA is the order service on PostgreSQL (or MySQL): prepare inserts
// the order, final; the prepared transaction hides it until the commit.
func orderXA(s *service, d xa.Dialect) *xaBackend {
	return &xaBackend{
		work: func(ctx context.Context, conn *sql.Conn, p purchase) (string, error) {
			_, err := conn.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s (id, %s, sku, qty, amount, status)
				VALUES (%s, %s, %s, %s, %s, 'committed')`, s.sqlTable, quoteUser(d),
				ph(d, 1), ph(d, 2), ph(d, 3), ph(d, 4), ph(d, 5)), p.Order, p.User, p.SKU, p.Qty, p.Amount)
			return fmt.Sprintf("insert order #%d for %s: %d × %s, %d", p.Order, p.User, p.Qty, p.SKU, p.Amount), err
		},
		hidden: "the order row exists but nobody else can see it",
		visible: func(ctx context.Context, p purchase) (string, error) {
			var n int
			err := s.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE id = %s`, s.sqlTable, ph(d, 1)), p.Order).Scan(&n)
			return fmt.Sprintf("another session finds %d rows for order #%d", n, p.Order), err
		},
		commit: "the order row is now visible to everyone",
		abort:  "the order row is gone, and nobody ever saw it",
	}
}

// stockXA is the inventory service on MySQL/MariaDB: prepare takes the
// items out of stock, final; the prepared branch holds the row's lock and
// others keep reading the old quantity until the commit.
func stockXA(s *service, d xa.Dialect) *xaBackend {
	return &xaBackend{
		work: func(ctx context.Context, conn *sql.Conn, p purchase) (string, error) {
			var have int
			err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT qty FROM %s WHERE sku = %s FOR UPDATE`, s.sqlTable, ph(d, 1)), p.SKU).Scan(&have)
			if errors.Is(err, sql.ErrNoRows) {
				return "", participant.Reject("no such item %q", p.SKU)
			}
			if err != nil {
				return "", err
			}
			if have < p.Qty {
				return "", participant.Reject("stock short: have %d, want %d", have, p.Qty)
			}
			_, err = conn.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET qty = qty - %s WHERE sku = %s`, s.sqlTable, ph(d, 1), ph(d, 2)), p.Qty, p.SKU)
			return fmt.Sprintf("take %d × %s from stock: %d → %d", p.Qty, p.SKU, have, have-p.Qty), err
		},
		hidden: "the stock row is changed and locked, but nobody else sees the change",
		visible: func(ctx context.Context, p purchase) (string, error) {
			var n int
			err := s.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT qty FROM %s WHERE sku = %s`, s.sqlTable, ph(d, 1)), p.SKU).Scan(&n)
			return fmt.Sprintf("another session still reads qty=%d", n), err
		},
		commit: "the new stock level is now visible to everyone",
		abort:  "the stock row is back as it was, and nobody ever saw the change",
	}
}

// handleXA serves a 2PC call with participant/xa: the branch is a
// prepared transaction of the service's database.
func (s *service) handleXA() participant.HandlerFunc {
	return func(ctx context.Context, b participant.Branch, body []byte) error {
		if b.Op == participant.OpCommit || b.Op == participant.OpAbort {
			announceDecision(s.out, b.GID, b.Op)
		}
		var (
			p    purchase
			did  string
			ran  bool
			werr error
			err  error
		)
		switch b.Op {
		case participant.OpPrepare:
			if err := json.Unmarshal(body, &p); err != nil {
				return fmt.Errorf("%s%s: payload: %w", s.name, pathTwoPC, err)
			}
			err = xa.Prepare(ctx, s.db, s.xa.d, b, func(ctx context.Context, conn *sql.Conn) error {
				ran = true
				did, werr = s.xa.work(ctx, conn, p)
				return werr
			})
		case participant.OpCommit:
			err = xa.Commit(ctx, s.db, s.xa.d, b)
		case participant.OpAbort:
			err = xa.Abort(ctx, s.db, s.xa.d, b)
		default:
			err = fmt.Errorf("%s%s: operation %q is not prepare, commit or abort", s.name, pathTwoPC, b.Op)
		}
		if b.Op != participant.OpPrepare && errors.Is(err, participant.ErrRejected) {
			err = fmt.Errorf("xa: %s failed: %s", b.Op, err.Error()) // only a vote may be "no"
		}
		seen := ""
		if b.Op == participant.OpPrepare && err == nil && ran {
			if v, verr := s.xa.visible(ctx, p); verr == nil {
				seen = v
			}
		}
		s.reportXA(b, ran, did, seen, err)
		return err
	}
}

// reportXA prints one line for a 2PC call served with participant/xa and
// wakes whoever waits for the branch to settle.
func (s *service) reportXA(b participant.Branch, ran bool, did, seen string, err error) {
	key := b.GID + "/" + b.BranchID
	on := s.xa.stmt(b.Op) + " on " + s.xa.label
	s.mu.Lock()
	var msg string
	switch {
	case b.Op == participant.OpPrepare && errors.Is(err, participant.ErrRejected) && ran:
		msg = "votes NO: " + trimRejected(err) + "; rolled back, nothing prepared on " + s.xa.label
		s.done[key+"/rejected"] = true
	case b.Op == participant.OpPrepare && errors.Is(err, participant.ErrRejected):
		msg = "votes NO: refused, the branch is already aborted here (the abort came first)"
	case err != nil:
		msg = "error, outcome unknown (the coordinator retries): " + err.Error()
	case b.Op == participant.OpPrepare && ran:
		msg = fmt.Sprintf("votes YES: %s; %s: %s", did, on, s.xa.hidden)
		if seen != "" {
			msg += " (" + seen + ")"
		}
		s.done[key+"/prepared"] = true
	case b.Op == participant.OpPrepare:
		msg = "votes YES again: already prepared (repeated delivery)"
	case b.Op == participant.OpCommit && !s.done[key+"/committed"]:
		msg = on + ": " + s.xa.commit
		s.done[key+"/committed"] = true
	case b.Op == participant.OpAbort && s.done[key+"/prepared"] && !s.done[key+"/aborted"]:
		msg = on + ": " + s.xa.abort
		s.done[key+"/aborted"] = true
	case b.Op == participant.OpAbort && !s.done[key+"/prepared"]:
		msg = "nothing to roll back: never prepared here (the abort is recorded; a late prepare is refused)"
	default:
		msg = "already done: repeated delivery"
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.out.printf("  %-11s %-11s gid=%s  %s\n", "["+s.name+"]", b.Op, b.GID, msg)
}

// xaState tells where the branch (gid, s.name) stands in the service's
// database: prepared while its prepared transaction exists, committed once
// its marker row is visible, aborted once its abort is recorded.
func (s *service) xaState(ctx context.Context, gid string) (twophase.State, error) {
	s.mu.Lock()
	rejected := s.done[gid+"/"+s.name+"/rejected"]
	s.mu.Unlock()
	if rejected {
		return twophase.StateAborted, nil // voted no: nothing was prepared, nothing will be
	}
	list, err := xa.Recover(ctx, s.db, s.xa.d)
	if err != nil {
		return "", err
	}
	for _, p := range list {
		if p.GID == gid && p.BranchID == s.name {
			return twophase.StatePrepared, nil
		}
	}
	d := s.xa.d
	for _, t := range []struct {
		table string
		st    twophase.State
	}{{xa.MarkerTable, twophase.StateCommitted}, {xa.AbortTable, twophase.StateAborted}} {
		var n int
		q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE gid = %s AND branch_id = %s`, t.table, ph(d, 1), ph(d, 2))
		if err := s.db.QueryRowContext(ctx, q, gid, s.name).Scan(&n); err != nil {
			return "", err
		}
		if n > 0 {
			return t.st, nil
		}
	}
	return twophase.StateNone, nil
}

// branchState is the service's state of its branch of gid.
func (s *service) branchState(ctx context.Context, gid string) (twophase.State, error) {
	if s.xa != nil {
		return s.xaState(ctx, gid)
	}
	return s.tp.State(ctx, gid, s.name)
}

// openShopXA starts the 2PC shop on real databases: order on PostgreSQL,
// inventory on MySQL/MariaDB (both with participant/xa), payment on
// SQLite in dir (participant/twophase).
func openShopXA(ctx context.Context, dir string, x *xaDBs, out *console) (*shop, error) {
	sh := &shop{xa: true}
	suffix := randomSuffix()
	orders := "demo_orders_" + suffix
	stock := "demo_stock_" + suffix
	var err error
	sh.order, err = openXAService(ctx, x.pg, xa.Postgres, x.pgLabel, x.pgWhere, "order", "orders", orders,
		[]string{fmt.Sprintf(`CREATE TABLE %s (
	id     INTEGER PRIMARY KEY,
	"user" TEXT    NOT NULL,
	sku    TEXT    NOT NULL,
	qty    INTEGER NOT NULL,
	amount INTEGER NOT NULL,
	status TEXT    NOT NULL
)`, orders)}, orderXA, out)
	if err != nil {
		return nil, err
	}
	sh.inventory, err = openXAService(ctx, x.my, xa.MySQL, x.myLabel, x.myWhere, "inventory", "stock", stock,
		[]string{fmt.Sprintf(`CREATE TABLE %s (
	sku      VARCHAR(64) PRIMARY KEY,
	qty      INTEGER NOT NULL CHECK (qty >= 0),
	reserved INTEGER NOT NULL CHECK (reserved >= 0)
) ENGINE=InnoDB`, stock),
			fmt.Sprintf(`INSERT INTO %s (sku, qty, reserved) VALUES ('%s', %d, 0)`, stock, sku, startStock)},
		stockXA, out)
	if err != nil {
		sh.close()
		return nil, err
	}
	if err := mkdir(dir); err != nil {
		sh.close()
		return nil, err
	}
	if sh.payment, err = openService(ctx, dir, "payment", "accounts", accountSchema, accountRoutes, accountPhases, out); err != nil {
		sh.close()
		return nil, err
	}
	return sh, nil
}

// cleanupXA ends every prepared transaction the demo's gids left behind
// (there should be none) and deletes the bookkeeping rows of those gids.
// It runs before the tables are dropped.
func (sh *shop) cleanupXA(ctx context.Context) error {
	var errs []error
	for _, s := range []*service{sh.order, sh.inventory} {
		if s == nil {
			continue
		}
		list, err := xa.Recover(ctx, s.db, s.xa.d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range list {
			if !slices.Contains(sh.gids, p.GID) {
				continue
			}
			b := participant.Branch{GID: p.GID, BranchID: p.BranchID, Op: participant.OpAbort, Mode: "2pc"}
			if err := xa.Abort(ctx, s.db, s.xa.d, b); err != nil {
				errs = append(errs, fmt.Errorf("demo: %s: abort leftover %s: %w", s.name, p.XID, err))
			} else {
				sh.leftovers++
			}
		}
		for _, gid := range sh.gids {
			for _, t := range []string{xa.MarkerTable, xa.AbortTable, xa.NameTable} {
				q := fmt.Sprintf(`DELETE FROM %s WHERE gid = %s`, t, ph(s.xa.d, 1))
				if _, err := s.db.ExecContext(ctx, q, gid); err != nil {
					errs = append(errs, fmt.Errorf("demo: %s: %s: %w", s.name, t, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
