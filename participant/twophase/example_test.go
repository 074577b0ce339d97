package twophase_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/twophase"
)

// openInventory opens a fresh SQLite inventory in a temporary directory
// (removed by the returned func) with 10 shirts in stock.
func openInventory() (*sql.DB, func()) {
	dir, err := os.MkdirTemp("", "concord-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "inventory.db")+"?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL, reserved INTEGER NOT NULL);
		INSERT INTO stock VALUES ('shirt', 10, 0)`); err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

// call sends what the coordinator would, one operation on one branch, to
// h, and prints the answer and the stock.
func call(db *sql.DB, h http.Handler, mode, gid string, op participant.Op, payload string) {
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader([]byte(payload)))
	participant.Branch{GID: gid, BranchID: "stock", Op: op, Mode: mode}.SetHeaders(req.Header)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	printStock(db, fmt.Sprintf("%s %-10s → %d", gid, op, rec.Code))
}

func printStock(db *sql.DB, what string) {
	var qty, reserved int
	if err := db.QueryRow(`SELECT qty, reserved FROM stock WHERE sku = 'shirt'`).Scan(&qty, &reserved); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: stock %d, reserved %d\n", what, qty, reserved)
}

// An inventory service takes part in two-phase commits on one URL. Prepare
// moves the items to reserved (or votes no), commit ships the reserved
// items, abort puts them back. The helper keeps each prepared branch in the
// service's own database, in the same local transactions.
func ExampleStore_Handler() {
	db, done := openInventory()
	defer done()
	store, err := twophase.New(db, participant.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.CreateTable(context.Background()); err != nil {
		log.Fatal(err)
	}
	type item struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	move := func(query string) func(context.Context, *sql.Tx, participant.Branch, []byte) error {
		return func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			var it item
			if err := json.Unmarshal(intent, &it); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, query, it.Qty, it.SKU)
			return err
		}
	}
	h := store.Handler(twophase.Resource{
		Check: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, payload []byte) error {
			var it item
			if err := json.Unmarshal(payload, &it); err != nil {
				return participant.Reject("bad request: %v", err)
			}
			res, err := tx.ExecContext(ctx, `UPDATE stock SET qty = qty - ?1, reserved = reserved + ?1
				WHERE sku = ?2 AND qty >= ?1`, it.Qty, it.SKU)
			if err != nil {
				return err // 500: the coordinator asks again
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return participant.Reject("stock short for %s", it.SKU) // vote no
			}
			return nil // vote yes: the reservation and the intent are on disk
		},
		Apply: move(`UPDATE stock SET reserved = reserved - ? WHERE sku = ?`),
		Undo:  move(`UPDATE stock SET qty = qty + ?1, reserved = reserved - ?1 WHERE sku = ?2`),
	})
	// In the service: http.Handle("POST /2pc", h); http.ListenAndServe(…).
	// Here, what the coordinator would send:
	call(db, h, "2pc", "order-1", participant.OpPrepare, `{"sku":"shirt","qty":3}`)
	call(db, h, "2pc", "order-1", participant.OpCommit, "")
	call(db, h, "2pc", "order-1", participant.OpCommit, "") // a retry: done already
	call(db, h, "2pc", "order-2", participant.OpPrepare, `{"sku":"shirt","qty":20}`)
	call(db, h, "2pc", "order-3", participant.OpPrepare, `{"sku":"shirt","qty":2}`)
	call(db, h, "2pc", "order-3", participant.OpAbort, "")
	// Output:
	// order-1 prepare    → 200: stock 7, reserved 3
	// order-1 commit     → 200: stock 7, reserved 0
	// order-1 commit     → 200: stock 7, reserved 0
	// order-2 prepare    → 409: stock 7, reserved 0
	// order-3 prepare    → 200: stock 5, reserved 2
	// order-3 abort      → 200: stock 7, reserved 0
}

// The same inventory as a three-phase commit participant. Can-commit only
// looks (no transaction, nothing taken); pre-commit reserves, as prepare
// did; do-commit ships. A reservation that hears nothing from the
// coordinator for DecisionTimeout ships on its own (the sweeper, Run or
// SweepOnce), which is what makes 3PC non-blocking and able to diverge:
// see docs/protocols.md.
func ExampleStore_ThreePC() {
	db, done := openInventory()
	defer done()
	clock := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC) // the Store's clock, for the example
	store, err := twophase.New(db, participant.SQLite, twophase.WithClock(func() time.Time { return clock }))
	if err != nil {
		log.Fatal(err)
	}
	if err := store.CreateTable(context.Background()); err != nil {
		log.Fatal(err)
	}
	qty := func(payload []byte) (n int) { fmt.Sscan(string(payload), &n); return n }
	p, err := store.ThreePC(twophase.Resource{
		CanCommit: func(ctx context.Context, _ participant.Branch, payload []byte) error {
			var have int
			if err := db.QueryRowContext(ctx, `SELECT qty FROM stock WHERE sku = 'shirt'`).Scan(&have); err != nil {
				return err
			}
			if have < qty(payload) {
				return participant.Reject("stock short") // no
			}
			return nil // yes; pre-commit checks again under its lock
		},
		Check: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, payload []byte) error {
			res, err := tx.ExecContext(ctx, `UPDATE stock SET qty = qty - ?1, reserved = reserved + ?1
				WHERE sku = 'shirt' AND qty >= ?1`, qty(payload))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return participant.Reject("stock short") // refuse the pre-commit
			}
			return nil
		},
		Apply: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			_, err := tx.ExecContext(ctx, `UPDATE stock SET reserved = reserved - ? WHERE sku = 'shirt'`, qty(intent))
			return err
		},
		Undo: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			_, err := tx.ExecContext(ctx, `UPDATE stock SET qty = qty + ?1, reserved = reserved - ?1 WHERE sku = 'shirt'`, qty(intent))
			return err
		},
	}, twophase.ThreePCConfig{VoteTimeout: 30 * time.Second, DecisionTimeout: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	// In the service: go p.Run(ctx, time.Second) for the timeouts, and
	// http.Handle("POST /3pc", p.Handler()). Here, the coordinator's calls:
	h := p.Handler()
	call(db, h, "3pc", "order-1", participant.OpCanCommit, "3")
	call(db, h, "3pc", "order-1", participant.OpPreCommit, "3")
	call(db, h, "3pc", "order-1", participant.OpDoCommit, "")
	call(db, h, "3pc", "order-2", participant.OpCanCommit, "20")
	call(db, h, "3pc", "order-3", participant.OpCanCommit, "2")
	call(db, h, "3pc", "order-3", participant.OpPreCommit, "2")
	// The coordinator goes silent: a minute later order-3 ships on its own.
	clock = clock.Add(time.Minute)
	sw, err := p.SweepOnce(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	printStock(db, fmt.Sprintf("sweep, %d committed", sw.Committed))
	// Output:
	// order-1 can-commit → 200: stock 10, reserved 0
	// order-1 pre-commit → 200: stock 7, reserved 3
	// order-1 do-commit  → 200: stock 7, reserved 0
	// order-2 can-commit → 409: stock 7, reserved 0
	// order-3 can-commit → 200: stock 7, reserved 0
	// order-3 pre-commit → 200: stock 5, reserved 2
	// sweep, 1 committed: stock 5, reserved 0
}

// A 3PC participant with Skeen's termination protocol: when a timeout
// fires it asks the other branches (named by the coordinator) before
// deciding. The same endpoint answers their questions: asked about a
// branch it has not pre-committed, it aborts the branch first, durably, so
// that a late pre-commit cannot make it diverge from what it answered.
// Over gRPC, serve the state queries with participant.WithStates(p.AnswerPeer).
func ExampleThreePCConfig_termination() {
	db, done := openInventory()
	defer done()
	store, err := twophase.New(db, participant.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.CreateTable(context.Background()); err != nil {
		log.Fatal(err)
	}
	ok := func(context.Context, *sql.Tx, participant.Branch, []byte) error { return nil }
	r := twophase.Resource{Check: ok, Apply: ok, Undo: ok} // as in ExampleStore_ThreePC
	p, err := store.ThreePC(r, twophase.ThreePCConfig{
		VoteTimeout:     30 * time.Second,
		DecisionTimeout: time.Minute,
		Termination:     true,
		AskTimeout:      5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	// In the service: go p.Run(ctx, time.Second) and
	// http.Handle("POST /3pc", p.Handler()) on its public address.
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()

	// Another branch of order-9, whose timeout fired, asks this one.
	st, err := participant.AskPeer(context.Background(), srv.Client(), "order-9", "3pc",
		participant.Peer{Branch: "stock", URL: srv.URL})
	fmt.Println("peer asks about order-9:", st, err)
	// The coordinator's pre-commit arrives late: refused.
	call(db, p.Handler(), "3pc", "order-9", participant.OpPreCommit, "1")
	// Output:
	// peer asks about order-9: aborted <nil>
	// order-9 pre-commit → 409: stock 10, reserved 0
}

// A 2PC participant resolves its prepared branches that heard no decision:
// it asks the coordinator and, with Termination, the other participants
// (the cooperative termination protocol), which settles the branch when
// one of them committed, aborted or has not voted.
func ExampleResolver() {
	db, done := openInventory()
	defer done()
	clock := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC) // the Store's clock, for the example
	store, err := twophase.New(db, participant.SQLite, twophase.WithClock(func() time.Time { return clock }))
	if err != nil {
		log.Fatal(err)
	}
	if err := store.CreateTable(context.Background()); err != nil {
		log.Fatal(err)
	}
	qty := func(payload []byte) (n int) { fmt.Sscan(string(payload), &n); return n }
	r := twophase.Resource{ // as in ExampleStore_Handler
		Check: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, payload []byte) error {
			_, err := tx.ExecContext(ctx, `UPDATE stock SET qty = qty - ?1, reserved = reserved + ?1 WHERE sku = 'shirt'`, qty(payload))
			return err
		},
		Apply: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			_, err := tx.ExecContext(ctx, `UPDATE stock SET reserved = reserved - ? WHERE sku = 'shirt'`, qty(intent))
			return err
		},
		Undo: func(ctx context.Context, tx *sql.Tx, _ participant.Branch, intent []byte) error {
			_, err := tx.ExecContext(ctx, `UPDATE stock SET qty = qty + ?1, reserved = reserved - ?1 WHERE sku = 'shirt'`, qty(intent))
			return err
		},
	}
	h := store.Handler(r) // answers the peers' questions too
	call(db, h, "2pc", "order-1", participant.OpPrepare, "3")
	call(db, h, "2pc", "order-2", participant.OpPrepare, "2")
	// The coordinator decided but its phase 2 never arrived. In a service,
	// Decide is client.New(concordURL).Decision.
	decisions := map[string]string{"order-1": "commit", "order-2": "abort"}
	res := &twophase.Resolver{Store: store, Resource: r, MinAge: time.Minute, Termination: true,
		Decide: func(_ context.Context, gid string) (string, error) { return decisions[gid], nil }}
	// In the service: go res.Run(ctx, 10*time.Second). Here, one scan a
	// minute later, when both branches are old enough to ask about.
	clock = clock.Add(time.Minute)
	got, err := res.ResolveOnce(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	printStock(db, fmt.Sprintf("resolved %d committed, %d aborted", got.Committed, got.Aborted))
	// Output:
	// order-1 prepare    → 200: stock 7, reserved 3
	// order-2 prepare    → 200: stock 5, reserved 5
	// resolved 1 committed, 1 aborted: stock 7, reserved 0
}
