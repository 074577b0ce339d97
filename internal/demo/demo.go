// Package demo is `concord demo`: the shop of the distributed-transactions
// lecture, end to end, in one process.
//
// A real coordinator runs on the embedded store in a data directory. Three
// participant services (order, inventory, payment) each serve HTTP on a
// loopback port and keep their data in their own SQLite database, guarded
// by a participant.Barrier so that retries, null compensations and hanging
// calls are harmless, and by participant/twophase for two-phase commit,
// which keeps each prepared branch in that same database. For each protocol
// (saga, TCC, 2PC) the demo then plays the lecture's two purchases:
//
//  1. user B buys 2 T-shirts: every service says yes, the transaction
//     succeeds;
//  2. user A buys 100 T-shirts while only 8 are left: the inventory says
//     (votes) no, the transaction aborts, and whatever the order service
//     had already done or reserved is undone, so nothing changes anywhere.
//
// The msg mode plays the lecture's third method, reliable messages, with a
// failed payment instead: the services tell each other with messages, and
// the failure is rolled back by a compensating message (see msgdemo.go).
//
// It prints every call a service handles, the coordinator's outcome and the
// rows of every database, and checks the outcome against snapshots of the
// tables taken before and after each purchase. Run returns those snapshots
// in a Report.
//
// With Options.PostgresDSN and Options.MySQLDSN, the 2PC purchases run with
// the order service on PostgreSQL and the inventory service on
// MySQL/MariaDB through participant/xa, so that their yes votes are real
// prepared transactions (see xademo.go).
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/server"
	"github.com/concordtm/concord/participant"
)

// Modes Options.Mode accepts.
const (
	ModeSaga  = "saga"
	ModeTCC   = "tcc"
	ModeTwoPC = "2pc"
	ModeMsg   = "msg" // reliable messages: eventual consistency (msgdemo.go)
	ModeAll   = "all" // every mode in turn: saga, tcc, 2pc, msg
	// ModeBoth is the old name of ModeAll, from when there were two.
	ModeBoth = "both"
)

// Errors Run returns, tested with errors.Is.
var (
	// ErrInvalidMode reports an Options.Mode other than saga, tcc, 2pc,
	// msg or all.
	ErrInvalidMode = errors.New("demo: invalid mode")
	// ErrCheck reports that a purchase did not end as it should: a wrong
	// status, or a failed purchase that left a change behind.
	ErrCheck = errors.New("demo: check failed")
)

// Options configure Run.
type Options struct {
	Mode    string       // saga, tcc, 2pc, msg or all (the default; "both" is an alias)
	DataDir string       // kept if set; otherwise a temporary directory, removed afterwards
	Out     io.Writer    // the narration; nil discards it
	Log     *slog.Logger // the coordinator's log; nil discards it

	// PostgresDSN (pgx) and MySQLDSN (go-sql-driver/mysql), given together
	// and only with the 2pc mode (or all), run the 2PC purchases with the
	// order service on PostgreSQL and the inventory service on
	// MySQL/MariaDB, through participant/xa: every yes vote there is a real
	// PREPARE TRANSACTION or XA PREPARE. The demo creates its own tables
	// (demo_orders_<random>, demo_stock_<random>) and drops them at the end.
	PostgresDSN, MySQLDSN string
}

// Report is what Run observed, for tests and callers that check it.
type Report struct {
	DataDir string
	Modes   []ModeReport
}

// ModeReport is one protocol's run: the opening state and the purchases.
type ModeReport struct {
	Mode      string
	XA        bool     // order and inventory on PostgreSQL and MySQL/MariaDB
	XATables  []string // then: their tables there (dropped at the end)
	Initial   Snapshot
	Purchases []Purchase
}

// Purchase is one global transaction and the shop's tables around it.
type Purchase struct {
	User           string
	Qty, Amount    int
	GID            string
	Status, Reason string   // the coordinator's final word
	Before, After  Snapshot // business tables just before and after

	// The msg mode: every message of the purchase in order, the tables
	// after the first message was delivered and before the payment's
	// was, and the order's final status. Status is then the last
	// message's; Reason the payment service's.
	Messages    []MessageReport
	Between     Snapshot
	OrderStatus string
}

// Unchanged reports whether the purchase left every business table as it
// found it.
func (p Purchase) Unchanged() bool { return p.Before.Equal(p.After) }

// scenario is one purchase of the story and the outcome it must have.
type scenario struct {
	user  string
	qty   int
	want  string
	title string // may mention the stock level with %[1]d
}

var scenarios = []scenario{
	{user: "B", qty: 2, want: client.StatusSucceeded,
		title: "user B buys 2 T-shirts: every service can say yes"},
	{user: "A", qty: 100, want: client.StatusAborted,
		title: "user A buys 100 T-shirts, but only %[1]d are in stock"},
}

// txTimeout bounds one purchase, so that a broken run fails instead of
// hanging.
const txTimeout = 30 * time.Second

// Run plays the demo and reports what happened. It returns an error wrapping
// ErrCheck, together with the full report, if an outcome is not the one
// the story expects.
func Run(ctx context.Context, o Options) (Report, error) {
	modes, err := parseMode(o.Mode)
	if err != nil {
		return Report{}, err
	}
	if err := checkXAOptions(o, modes); err != nil {
		return Report{}, err
	}
	var xdb *xaDBs
	if o.PostgresDSN != "" {
		if xdb, err = openXADBs(ctx, o.PostgresDSN, o.MySQLDSN); err != nil {
			return Report{}, err
		}
		defer xdb.close()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	out := &console{w: o.Out}
	rep := Report{DataDir: o.DataDir}
	if rep.DataDir == "" {
		if rep.DataDir, err = os.MkdirTemp("", "concord-demo-"); err != nil {
			return rep, err
		}
		defer os.RemoveAll(rep.DataDir)
	}

	coordURL, stop, err := startCoordinator(ctx, filepath.Join(rep.DataDir, "coordinator"), o.Log)
	if err != nil {
		return rep, err
	}
	defer stop()
	c := client.New(coordURL)

	out.printf("Concord demo: the shop from the lecture, end to end, in one process.\n\n")
	kept := "kept"
	if o.DataDir == "" {
		kept = "removed at exit"
	}
	out.printf("  data dir      %s (%s)\n", rep.DataDir, kept)
	out.printf("  coordinator   %s, on the embedded store in coordinator/\n", coordURL)
	out.printf("  services      order, inventory and payment, each an HTTP server with its own\n")
	out.printf("                SQLite database, a barrier table that makes every saga and TCC call\n")
	out.printf("                and every message delivery idempotent, and a 2PC table that keeps\n")
	out.printf("                prepared branches (twophase)\n")
	if xdb != nil {
		out.printf("  2PC on real   order on %s %s, inventory on %s %s\n", xdb.pgLabel, xdb.pgWhere, xdb.myLabel, xdb.myWhere)
		out.printf("  databases     (participant/xa: a yes vote is a real prepared transaction there)\n")
	}

	var checks []error
	for _, mode := range modes {
		mr, errs, err := runMode(ctx, c, mode, filepath.Join(rep.DataDir, "shop-"+mode), xdb, out)
		rep.Modes = append(rep.Modes, mr)
		if err != nil {
			return rep, err
		}
		checks = append(checks, errs...)
	}
	printSummary(out, rep)
	return rep, errors.Join(checks...)
}

func parseMode(m string) ([]string, error) {
	switch m {
	case "", ModeAll, ModeBoth:
		return []string{ModeSaga, ModeTCC, ModeTwoPC, ModeMsg}, nil
	case ModeSaga, ModeTCC, ModeTwoPC, ModeMsg:
		return []string{m}, nil
	}
	return nil, fmt.Errorf("%w %q: want saga, tcc, 2pc, msg or all", ErrInvalidMode, m)
}

// startCoordinator runs a coordinator on a loopback port until stop is
// called, and returns its base URL.
func startCoordinator(ctx context.Context, dir string, log *slog.Logger) (url string, stop func(), err error) {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = dir
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, log, func(addr string) { ready <- addr }) }()
	select {
	case addr := <-ready:
		return "http://" + addr, func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return "", nil, fmt.Errorf("demo: start coordinator: %w", err)
	}
}

// runMode opens a fresh shop and plays every scenario under one protocol.
// The first error list holds failed checks; the error is anything that
// stopped the run.
func runMode(ctx context.Context, c *client.Client, mode, dir string, xdb *xaDBs, out *console) (ModeReport, []error, error) {
	if mode == ModeMsg {
		return runMsgMode(ctx, c, dir, out)
	}
	mr := ModeReport{Mode: mode, XA: mode == ModeTwoPC && xdb != nil}
	var sh *shop
	var err error
	if mr.XA {
		sh, err = openShopXA(ctx, dir, xdb, out)
	} else {
		sh, err = openShop(ctx, dir, out)
	}
	if err != nil {
		return mr, nil, err
	}
	if mr.XA {
		mr.XATables = []string{sh.order.sqlTable, sh.inventory.sqlTable}
	}
	defer func() {
		sh.close()
		if sh.leftovers > 0 {
			out.printf("  ✗ %d prepared branches of the demo were left behind; rolled back now\n", sh.leftovers)
		}
		if sh.cleanupErr != nil {
			out.printf("  ✗ cleanup of the databases: %v\n", sh.cleanupErr)
		}
	}()
	if mr.Initial, err = sh.snapshot(ctx); err != nil {
		return mr, nil, err
	}
	printModeHeader(out, mode, sh)
	out.printf("\n  The shop opens with:\n")
	printSnapshot(out, mr.Initial)

	var checks []error
	before := mr.Initial
	for i, sc := range scenarios {
		p := purchase{Order: i + 1, User: sc.user, SKU: sku, Qty: sc.qty, Amount: sc.qty * price}
		have, err := sh.inventory.stock(ctx)
		if err != nil {
			return mr, checks, err
		}
		title := fmt.Sprintf(sc.title, have)
		if !strings.Contains(sc.title, "%") {
			title = sc.title
		}
		out.printf("\n── %s %d. %s %s\n", strings.ToUpper(mode), i+1, title, strings.Repeat("─", max(3, 70-len(mode)-len(title))))
		pr := Purchase{User: p.User, Qty: p.Qty, Amount: p.Amount, GID: newGID(mode, p.User), Before: before}
		sh.gids = append(sh.gids, pr.GID)
		tctx, cancel := context.WithTimeout(ctx, txTimeout)
		var tx *client.Transaction
		switch mode {
		case ModeSaga:
			tx, err = runSaga(tctx, c, sh, pr.GID, p, out)
		case ModeTCC:
			tx, err = runTCC(tctx, c, sh, pr.GID, p, out)
		default:
			tx, err = runTwoPC(tctx, c, sh, pr.GID, p, out)
		}
		cancel()
		if err != nil {
			return mr, checks, fmt.Errorf("demo: %s purchase %d: %w", mode, i+1, err)
		}
		pr.Status, pr.Reason = tx.Status, tx.Reason
		if pr.After, err = sh.snapshot(ctx); err != nil {
			return mr, checks, err
		}
		mr.Purchases = append(mr.Purchases, pr)
		checks = append(checks, report(out, mode, sc, pr, tx)...)
		before = pr.After
	}
	return mr, checks, nil
}

func printModeHeader(out *console, mode string, sh *shop) {
	switch mode {
	case ModeSaga:
		out.printf("\n══ SAGA %s\n", strings.Repeat("═", 70))
		out.printf("  The coordinator runs each step's action in turn: order.create, inventory.reserve,\n")
		out.printf("  payment.charge. If one says no, it runs the compensations of the steps that ran,\n")
		out.printf("  newest first.\n")
	case ModeTwoPC:
		out.printf("\n══ 2PC %s\n", strings.Repeat("═", 71))
		out.printf("  Phase 1: the coordinator asks every service to prepare. A service that can, reserves\n")
		out.printf("  (a pending order, reserved stock, frozen money), keeps the reservation in its own\n")
		out.printf("  database with the branch (participant/twophase) and votes yes; one that cannot\n")
		out.printf("  votes no. Phase 2: all yes → the coordinator writes COMMIT to disk, then tells\n")
		out.printf("  every service to commit; any no → it tells the yes voters to abort (release).\n")
		if sh.xa {
			out.printf("  Here order and inventory prepare in their real databases (participant/xa): the\n")
			out.printf("  prepare runs the final SQL and ends with PREPARE TRANSACTION (PostgreSQL) or\n")
			out.printf("  XA PREPARE (MySQL/MariaDB); the changes survive a crash but stay invisible\n")
			out.printf("  until COMMIT PREPARED / XA COMMIT. Payment keeps its reservation in SQLite.\n")
		}
	default:
		out.printf("\n══ TCC %s\n", strings.Repeat("═", 71))
		out.printf("  The shop itself calls every service's Try, which only reserves (a pending order,\n")
		out.printf("  reserved stock, frozen money). If all say yes, the coordinator Confirms every\n")
		out.printf("  reservation; if one says no, it Cancels the reservations.\n")
	}
	out.printf("\n")
	for _, s := range sh.services() {
		url := s.url
		if mode == ModeTwoPC {
			url += pathTwoPC
		}
		out.printf("  %-10s %-26s %s\n", s.name, url, s.where)
	}
}

// runSaga submits the purchase as a saga and waits for its outcome.
func runSaga(ctx context.Context, c *client.Client, sh *shop, gid string, p purchase, out *console) (*client.Transaction, error) {
	steps := []struct {
		s                    *service
		action, compensation string
	}{
		{sh.order, "create", "cancel"},
		{sh.inventory, "reserve", "release"},
		{sh.payment, "charge", "refund"},
	}
	saga := c.NewSaga(gid)
	var names []string
	for _, st := range steps {
		saga.AddBranch(client.Branch{ID: st.s.name, Payload: p,
			Action: st.s.url + pathSaga + st.action, Compensate: st.s.url + pathSaga + st.compensation})
		names = append(names, st.s.name+"."+st.action)
	}
	out.printf("  %-11s %-11s gid=%s  submit saga: %s\n", "[shop]", "submit", gid, strings.Join(names, " → "))
	return saga.SubmitAndWait(ctx)
}

// runTCC runs the purchase as a TCC transaction: the shop calls each Try
// itself, then asks the coordinator to confirm or cancel.
func runTCC(ctx context.Context, c *client.Client, sh *shop, gid string, p purchase, out *console) (*client.Transaction, error) {
	out.printf("  %-11s %-11s gid=%s  begin TCC; try order, inventory, payment\n", "[shop]", "begin", gid)
	tx, err := c.RunTCC(ctx, gid, client.Options{}, func(ctx context.Context, t *client.TCC) error {
		for _, s := range sh.services() {
			if _, err := t.CallBranch(ctx, s.name, p, s.url+pathTry, s.url+pathConfirm, s.url+pathCancel); err != nil {
				out.printf("  %-11s %-11s gid=%s  %s's try failed → ask the coordinator to cancel\n", "[shop]", "rollback", gid, s.name)
				return err
			}
		}
		out.printf("  %-11s %-11s gid=%s  every try said yes → ask the coordinator to confirm\n", "[shop]", "commit", gid)
		return nil
	})
	if tx != nil && errors.Is(err, client.ErrTryRejected) {
		err = nil // a business no: the outcome is the aborted transaction
	}
	return tx, err
}

// report prints a purchase's outcome and returns the failed checks.
func report(out *console, mode string, sc scenario, pr Purchase, tx *client.Transaction) []error {
	outcome := strings.ToUpper(pr.Status)
	if pr.Reason != "" {
		outcome += ": " + strings.ReplaceAll(pr.Reason, participant.ErrRejected.Error()+": ", "")
	}
	out.printf("  %-11s %-11s gid=%s  %s\n", "[concord]", "outcome", pr.GID, outcome)
	for _, b := range tx.Branches {
		out.printf("  %-11s %-11s %s %-10s %s %s, %s %s\n", "", "", strings.Repeat(" ", len("gid=")+len(pr.GID)+1),
			b.ID, b.ForwardOp, b.ForwardStatus, b.BackwardOp, b.BackwardStatus)
	}
	if mode == ModeTwoPC && pr.Status == client.StatusAborted {
		out.printf("  %-11s %-11s %s  (an abort is sent once and not awaited: presumed abort)\n", "", "", strings.Repeat(" ", len("gid=")+len(pr.GID)))
	}
	out.printf("\n  Databases now:\n")
	printSnapshot(out, pr.After)

	var errs []error
	fail := func(format string, args ...any) {
		err := fmt.Errorf("%w: %s purchase by %s: %s", ErrCheck, mode, pr.User, fmt.Sprintf(format, args...))
		out.printf("  ✗ %v\n", err)
		errs = append(errs, err)
	}
	if pr.Status != sc.want {
		fail("status %s, want %s", pr.Status, sc.want)
	}
	diff := pr.Before.Diff(pr.After)
	switch {
	case sc.want == client.StatusAborted && len(diff) == 0:
		out.printf("\n  ✓ nothing changed anywhere for the failed purchase: all %d tables match their\n", len(pr.After))
		out.printf("    snapshot from before it (%s)\n", tableNames(pr.After))
	case sc.want == client.StatusAborted:
		fail("the failed purchase changed the databases:\n    %s", strings.Join(diff, "\n    "))
	case len(diff) == 0:
		fail("the purchase changed nothing")
	default:
		out.printf("\n  What the purchase changed:\n")
		for _, d := range diff {
			out.printf("    %s\n", d)
		}
	}
	return errs
}

func tableNames(s Snapshot) string {
	var names []string
	for _, t := range s {
		names = append(names, t.DB+" "+t.Name)
	}
	return strings.Join(names, ", ")
}

func printSummary(out *console, rep Report) {
	out.printf("\n══ SUMMARY %s\n", strings.Repeat("═", 67))
	for _, mr := range rep.Modes {
		for _, pr := range mr.Purchases {
			status, changed := pr.Status, "changed the shop"
			switch {
			case pr.Unchanged():
				changed = "changed nothing"
			case mr.Mode == ModeMsg && pr.OrderStatus == orderCancelled:
				status, changed = pr.OrderStatus, "left only its cancelled order"
			case mr.Mode == ModeMsg:
				status = pr.OrderStatus
			}
			out.printf("  %-5s %s buys %3d × %s  →  %-9s  %s\n", mr.Mode, pr.User, pr.Qty, sku, status, changed)
		}
	}
}

// newGID returns a short, readable, unique gid such as "saga-B-3f9a1c".
func newGID(mode, user string) string {
	var b [3]byte
	rand.Read(b[:])
	return mode + "-" + user + "-" + hex.EncodeToString(b[:])
}
