package xa_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"log"
	"net/http"

	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/xa"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// A payment service takes part in two-phase commits with one URL. Its
// business code is plain SQL on the connection it is handed; the package
// runs it inside a prepared transaction named after the branch, and
// commits or rolls that back when the coordinator has decided.
func ExampleHandler() {
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := xa.CreateTable(ctx, db, xa.Postgres); err != nil {
		log.Fatal(err)
	}

	debit := func(ctx context.Context, b participant.Branch, payload []byte, conn *sql.Conn) error {
		var req struct {
			Account string `json:"account"`
			Amount  int64  `json:"amount"`
		}
		if err := json.Unmarshal(payload, &req); err != nil {
			return participant.Reject("bad request: %v", err)
		}
		res, err := conn.ExecContext(ctx,
			"UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1",
			req.Amount, req.Account)
		if err != nil {
			return err // 500: the coordinator retries the prepare
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return participant.Reject("insufficient funds in %s", req.Account) // 409: vote no
		}
		return nil // 200: vote yes; the debit waits, prepared, for the decision
	}

	// The coordinator calls this URL with Concord-Op: prepare, commit or abort.
	http.Handle("/2pc/debit", xa.Handler(db, xa.Postgres, debit))

	// At startup, or periodically: branches left prepared by a crash,
	// for the coordinator's orphan scan.
	prepared, err := xa.Recover(ctx, db, xa.Postgres)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range prepared {
		log.Printf("prepared: gid %s branch %s since %s", p.GID, p.BranchID, p.PreparedAt)
	}
	log.Fatal(http.ListenAndServe(":8081", nil))
}
