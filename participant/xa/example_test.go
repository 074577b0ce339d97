package xa_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/xa"
)

// A payment service takes part in two-phase commits with one URL. Its
// business code is plain SQL on the connection it is handed; the package
// runs it inside a prepared transaction named after the branch, and
// commits or rolls that back when the coordinator has decided. (Once an
// example that never ran; now run against the real PostgreSQL, as the
// coordinator would call it.)
func TestHandlerPaymentService(t *testing.T) {
	db := testenv.PostgresXA(t)
	ctx := t.Context()
	accounts := testenv.UniqueName(t, "xa_accounts")
	if err := xa.CreateTable(ctx, db, xa.Postgres); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+accounts+" (id TEXT PRIMARY KEY, balance BIGINT NOT NULL); INSERT INTO "+accounts+" VALUES ('alice', 100)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE "+accounts) })

	debit := func(ctx context.Context, b participant.Branch, payload []byte, conn *sql.Conn) error {
		var req struct {
			Account string `json:"account"`
			Amount  int64  `json:"amount"`
		}
		if err := json.Unmarshal(payload, &req); err != nil {
			return participant.Reject("bad request: %v", err)
		}
		res, err := conn.ExecContext(ctx,
			"UPDATE "+accounts+" SET balance = balance - $1 WHERE id = $2 AND balance >= $1",
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
	srv := httptest.NewServer(xa.Handler(db, xa.Postgres, debit))
	defer srv.Close()
	gid := testenv.UniqueName(t, "pay")
	call := func(branch string, op participant.Op, body string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		participant.Branch{GID: gid, BranchID: branch, Op: op, Mode: "2pc"}.SetHeaders(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	balance := func() (n int64) {
		t.Helper()
		if err := db.QueryRowContext(ctx, "SELECT balance FROM "+accounts+" WHERE id = 'alice'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	if code := call("ok", participant.OpPrepare, `{"account":"alice","amount":30}`); code != 200 {
		t.Fatalf("prepare: %d, want 200 (vote yes)", code)
	}
	if b := balance(); b != 100 {
		t.Fatalf("balance %d while prepared, want 100 (the debit waits for the decision)", b)
	}
	// A branch left prepared is what the orphan scan (xa.Recover) lists.
	prepared, err := xa.Recover(ctx, db, xa.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range prepared {
		found = found || p.GID == gid && p.BranchID == "ok"
	}
	if !found {
		t.Fatalf("Recover lists %+v, want the prepared branch", prepared)
	}
	if code := call("ok", participant.OpCommit, ""); code != 200 {
		t.Fatalf("commit: %d", code)
	}
	if b := balance(); b != 70 {
		t.Fatalf("balance %d after commit, want 70", b)
	}
	if code := call("short", participant.OpPrepare, `{"account":"alice","amount":500}`); code != http.StatusConflict {
		t.Fatalf("prepare beyond the balance: %d, want 409 (vote no)", code)
	}
	if code := call("short", participant.OpAbort, ""); code != 200 {
		t.Fatalf("abort: %d", code)
	}
	if b := balance(); b != 70 {
		t.Fatalf("balance %d after the refused debit, want 70", b)
	}
}
