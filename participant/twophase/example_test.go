package twophase_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"log"
	"net/http"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/twophase"
)

// An inventory service takes part in two-phase commits on one URL. Prepare
// moves the items to reserved (or votes no), commit ships the reserved
// items, abort puts them back. The helper keeps each prepared branch in the
// service's own database, in the same local transactions.
func ExampleStore_Handler() {
	db, err := sql.Open("sqlite", "file:inventory.db?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
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
	http.Handle("POST /2pc", store.Handler(twophase.Resource{
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
	}))
	log.Fatal(http.ListenAndServe("127.0.0.1:8081", nil))
}

// The same inventory as a three-phase commit participant. Can-commit only
// looks (no transaction, nothing taken); pre-commit reserves, as prepare
// did; do-commit ships. A reservation that hears nothing from the
// coordinator for a minute ships on its own (the sweeper), which is what
// makes 3PC non-blocking and able to diverge: see docs/protocols.md.
func ExampleStore_ThreePC() {
	db, err := sql.Open("sqlite", "file:inventory.db?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	store, err := twophase.New(db, participant.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.CreateTable(context.Background()); err != nil {
		log.Fatal(err)
	}
	var qty func(payload []byte) int // decodes the payload (elided)
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
	go p.Run(context.Background(), time.Second) // the timeouts
	http.Handle("POST /3pc", p.Handler())
	log.Fatal(http.ListenAndServe("127.0.0.1:8081", nil))
}

// A 3PC participant with Skeen's termination protocol: when a timeout
// fires it asks the other branches (named by the coordinator) before
// deciding. The same endpoint answers their questions. Over gRPC, serve
// the state queries with participant.WithStates(p.AnswerPeer).
func ExampleThreePCConfig_termination() {
	db, err := sql.Open("sqlite", "file:ledger.db?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	store, err := twophase.New(db, participant.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.CreateTable(context.Background()); err != nil {
		log.Fatal(err)
	}
	var r twophase.Resource // Check, Apply and Undo as in ExampleStore_ThreePC
	p, err := store.ThreePC(r, twophase.ThreePCConfig{
		VoteTimeout:     30 * time.Second,
		DecisionTimeout: time.Minute,
		Termination:     true,
		AskTimeout:      5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	go p.Run(context.Background(), time.Second)
	http.Handle("POST /3pc", p.Handler())
	log.Fatal(http.ListenAndServe("127.0.0.1:8082", nil))
}

// A 2PC participant resolves its prepared branches that heard no decision:
// it asks the coordinator and, with Termination, the other participants
// (the cooperative termination protocol), which settles the branch when
// one of them committed, aborted or has not voted.
func ExampleResolver() {
	db, err := sql.Open("sqlite", "file:inventory.db?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	store, err := twophase.New(db, participant.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	var r twophase.Resource                                          // as in ExampleStore_Handler
	var decide func(ctx context.Context, gid string) (string, error) // client.New(concordURL).Decision
	res := &twophase.Resolver{Store: store, Resource: r, Decide: decide, MinAge: time.Minute, Termination: true}
	go res.Run(context.Background(), 10*time.Second)
	http.Handle("POST /2pc", store.Handler(r)) // answers the peers' questions too
	log.Fatal(http.ListenAndServe("127.0.0.1:8083", nil))
}
