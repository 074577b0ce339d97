package twophase_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"log"
	"net/http"

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
