package participant_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/concordtm/concord/participant"
	_ "modernc.org/sqlite"
)

// A stock service takes part in sagas with one branch, "reserve": its action
// takes one widget out of stock and its compensation puts it back. The
// barrier makes the handler safe against retries, a compensation that
// arrives for an action that never ran, and an action that arrives too late.
func ExampleBarrier_Do() {
	dir, err := os.MkdirTemp("", "concord-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "stock.db")+
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE stock (item TEXT PRIMARY KEY, qty INTEGER NOT NULL);
		INSERT INTO stock VALUES ('widget', 10)`); err != nil {
		log.Fatal(err)
	}

	barrier, err := participant.NewBarrier(db, participant.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := barrier.CreateTable(ctx); err != nil {
		log.Fatal(err)
	}

	// The handler the coordinator calls for both operations of the branch.
	reserve := participant.Handler(func(ctx context.Context, b participant.Branch, _ []byte) error {
		delta := -1 // action: take one widget
		if _, backward := b.Op.Undoes(); backward {
			delta = +1 // compensate: put it back
		}
		return barrier.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
			// All business writes go through tx, so they commit together
			// with the barrier's row, or not at all.
			_, err := tx.ExecContext(ctx, "UPDATE stock SET qty = qty + ? WHERE item = 'widget'", delta)
			return err
		})
	})

	// What the coordinator would send, and what the service answers.
	deliver := func(gid string, op participant.Op) {
		req := httptest.NewRequest(http.MethodPost, "/reserve", nil)
		participant.Branch{GID: gid, BranchID: "reserve", Op: op, Mode: "saga"}.SetHeaders(req.Header)
		rec := httptest.NewRecorder()
		reserve.ServeHTTP(rec, req)
		var qty int
		if err := db.QueryRowContext(ctx, "SELECT qty FROM stock").Scan(&qty); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %-10s → %d, stock %d\n", gid, op, rec.Code, qty)
	}

	deliver("order-1", participant.OpAction)     // takes a widget
	deliver("order-1", participant.OpAction)     // retry: already done
	deliver("order-1", participant.OpCompensate) // puts it back
	deliver("order-1", participant.OpCompensate) // retry: already done

	deliver("order-2", participant.OpCompensate) // null compensation
	deliver("order-2", participant.OpAction)     // hanging action: rejected

	// Output:
	// order-1 action     → 200, stock 9
	// order-1 action     → 200, stock 9
	// order-1 compensate → 200, stock 10
	// order-1 compensate → 200, stock 10
	// order-2 compensate → 200, stock 10
	// order-2 action     → 409, stock 10
}
