package crash

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/concordtm/concord/participant"
)

// transfer is the payload of every branch: the bank moves Amount out of
// Account (action, try) or back into it (compensate, cancel).
type transfer struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
	// Reject makes the bank refuse the action or try by rule (HTTP 409).
	Reject bool `json:"reject,omitempty"`
}

// clearing is the account inside every bank that holds the money of
// applied actions and confirmed tries until a compensation takes it back.
const clearing = "clearing"

// opKey names one operation of one branch.
type opKey struct {
	GID, Branch string
	Op          participant.Op
}

func (k opKey) String() string { return fmt.Sprintf("%s/%s/%s", k.GID, k.Branch, k.Op) }

// bank is a participant: an HTTP server on loopback over its own SQLite
// database, with a barrier in front of every operation and a ledger row
// for every operation that took effect. Money only moves inside one local
// transaction together with its ledger row and barrier row, so the ledger
// is the exact list of operations that were applied, duplicates included
// if the barrier ever let one through.
//
// Its operations (the URL path names the operation; the Concord-Op header
// must agree):
//
//	action:     balance -= amount, clearing += amount (may reject)
//	compensate: clearing -= amount, balance += amount
//	try:        balance -= amount, frozen += amount (may reject)
//	confirm:    frozen -= amount, clearing += amount
//	cancel:     frozen -= amount, balance += amount
//
// A forward operation is rejected when the payload says so or when the
// account lacks the funds.
type bank struct {
	name    string
	url     string
	db      *sql.DB
	barrier *participant.Barrier
	initial map[string]int64

	mu         sync.Mutex
	deliveries map[opKey]int // calls received, repeated deliveries included
	gate       *gate         // non-nil while deliveries are held
}

// gate holds deliveries: each announces itself on arrived and waits until
// open is closed.
type gate struct {
	open    chan struct{}
	arrived chan<- opKey
	wg      sync.WaitGroup
}

// newBank opens a fresh database with the given accounts (plus clearing)
// and serves the bank on 127.0.0.1:0 until the test ends.
func newBank(t *testing.T, name string, accounts map[string]int64) *bank {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".db")
	db, err := sql.Open("sqlite", "file:"+path+
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	ctx := t.Context()
	for _, q := range []string{
		`CREATE TABLE accounts (
			id      TEXT PRIMARY KEY,
			balance INTEGER NOT NULL,
			frozen  INTEGER NOT NULL DEFAULT 0
		)`,
		`CREATE TABLE ledger (
			seq     INTEGER PRIMARY KEY AUTOINCREMENT,
			gid     TEXT NOT NULL,
			branch  TEXT NOT NULL,
			op      TEXT NOT NULL,
			account TEXT NOT NULL,
			amount  INTEGER NOT NULL
		)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("bank %s: %v", name, err)
		}
	}
	k := &bank{name: name, db: db, initial: map[string]int64{clearing: 0}, deliveries: map[opKey]int{}}
	for id, v := range accounts {
		k.initial[id] = v
	}
	for id, v := range k.initial {
		if _, err := db.ExecContext(ctx, `INSERT INTO accounts (id, balance) VALUES (?, ?)`, id, v); err != nil {
			t.Fatalf("bank %s: %v", name, err)
		}
	}
	k.barrier, err = participant.NewBarrier(db, participant.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.barrier.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	h := participant.Handler(k.serve)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The coordinator must call each operation at its own URL.
		if op := r.Header.Get(participant.HeaderOp); r.URL.Path != "/"+op {
			http.Error(w, fmt.Sprintf("operation %q called at %s", op, r.URL.Path), http.StatusBadRequest)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	k.url = srv.URL
	return k
}

// Action, Compensate, Try, Confirm and Cancel are the bank's URLs.
func (k *bank) Action() string     { return k.url + "/action" }
func (k *bank) Compensate() string { return k.url + "/compensate" }
func (k *bank) Try() string        { return k.url + "/try" }
func (k *bank) Confirm() string    { return k.url + "/confirm" }
func (k *bank) Cancel() string     { return k.url + "/cancel" }

// serve is the participant.HandlerFunc of every operation.
func (k *bank) serve(ctx context.Context, b participant.Branch, payload []byte) error {
	key := opKey{b.GID, b.BranchID, b.Op}
	k.mu.Lock()
	k.deliveries[key]++
	g := k.gate
	if g != nil {
		g.wg.Add(1)
	}
	k.mu.Unlock()
	if g != nil {
		defer g.wg.Done()
		g.arrived <- key
		<-g.open
		// The caller may be gone by now (killed): apply anyway, like a
		// participant whose answer is lost on the way back.
		ctx = context.WithoutCancel(ctx)
	}
	var tr transfer
	if err := json.Unmarshal(payload, &tr); err != nil {
		return fmt.Errorf("bank %s: %s: bad payload %q: %v", k.name, key, payload, err)
	}
	return k.barrier.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
		return k.apply(ctx, tx, b, tr)
	})
}

// apply moves the money of one operation and writes its ledger row.
func (k *bank) apply(ctx context.Context, tx *sql.Tx, b participant.Branch, tr transfer) error {
	forward := b.Op == participant.OpAction || b.Op == participant.OpTry
	if forward {
		if tr.Reject {
			return participant.Reject("bank %s refuses %s of %d from %s by rule", k.name, b.Op, tr.Amount, tr.Account)
		}
		var balance int64
		err := tx.QueryRowContext(ctx, `SELECT balance FROM accounts WHERE id = ?`, tr.Account).Scan(&balance)
		if err != nil {
			return fmt.Errorf("bank %s: read %s: %w", k.name, tr.Account, err)
		}
		if balance < tr.Amount {
			return participant.Reject("bank %s: insufficient funds in %s: %d < %d", k.name, tr.Account, balance, tr.Amount)
		}
	}
	type move struct {
		account, column string
		delta           int64
	}
	var moves []move
	switch b.Op {
	case participant.OpAction:
		moves = []move{{tr.Account, "balance", -tr.Amount}, {clearing, "balance", tr.Amount}}
	case participant.OpCompensate:
		moves = []move{{clearing, "balance", -tr.Amount}, {tr.Account, "balance", tr.Amount}}
	case participant.OpTry:
		moves = []move{{tr.Account, "balance", -tr.Amount}, {tr.Account, "frozen", tr.Amount}}
	case participant.OpConfirm:
		moves = []move{{tr.Account, "frozen", -tr.Amount}, {clearing, "balance", tr.Amount}}
	case participant.OpCancel:
		moves = []move{{tr.Account, "frozen", -tr.Amount}, {tr.Account, "balance", tr.Amount}}
	default:
		return fmt.Errorf("bank %s: unknown operation %q", k.name, b.Op)
	}
	for _, m := range moves {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET `+m.column+` = `+m.column+` + ? WHERE id = ?`, m.delta, m.account)
		if err != nil {
			return fmt.Errorf("bank %s: update %s: %w", k.name, m.account, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("bank %s: update %s: %d rows, %v", k.name, m.account, n, err)
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO ledger (gid, branch, op, account, amount) VALUES (?, ?, ?, ?, ?)`,
		b.GID, b.BranchID, string(b.Op), tr.Account, tr.Amount)
	if err != nil {
		return fmt.Errorf("bank %s: ledger: %w", k.name, err)
	}
	return nil
}

// Hold makes every delivery from now on announce itself on arrived and
// wait until Release.
func (k *bank) Hold(arrived chan<- opKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gate = &gate{open: make(chan struct{}), arrived: arrived}
}

// Release lets the held deliveries apply (even if their caller is gone)
// and waits until they have.
func (k *bank) Release() {
	k.mu.Lock()
	g := k.gate
	k.gate = nil
	k.mu.Unlock()
	if g != nil {
		close(g.open)
		g.wg.Wait()
	}
}

// Delivered returns how many calls of op the bank received.
func (k *bank) Delivered(key opKey) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.deliveries[key]
}

// TotalDelivered returns how many calls the bank received in all.
func (k *bank) TotalDelivered() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, v := range k.deliveries {
		n += v
	}
	return n
}

// Redelivered returns how many calls repeated an operation already called.
func (k *bank) Redelivered() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, v := range k.deliveries {
		n += v - 1
	}
	return n
}

// Applied reads the ledger: how many times each operation took effect.
func (k *bank) Applied(t *testing.T) map[opKey]int {
	t.Helper()
	rows, err := k.db.QueryContext(t.Context(), `SELECT gid, branch, op, COUNT(*) FROM ledger GROUP BY gid, branch, op`)
	if err != nil {
		t.Fatalf("bank %s: ledger: %v", k.name, err)
	}
	defer rows.Close()
	out := map[opKey]int{}
	for rows.Next() {
		var key opKey
		var n int
		if err := rows.Scan(&key.GID, &key.Branch, &key.Op, &n); err != nil {
			t.Fatalf("bank %s: ledger: %v", k.name, err)
		}
		out[key] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("bank %s: ledger: %v", k.name, err)
	}
	return out
}

// funds is one account's money.
type funds struct{ Balance, Frozen int64 }

// Accounts reads every account.
func (k *bank) Accounts(t *testing.T) map[string]funds {
	t.Helper()
	rows, err := k.db.QueryContext(t.Context(), `SELECT id, balance, frozen FROM accounts`)
	if err != nil {
		t.Fatalf("bank %s: accounts: %v", k.name, err)
	}
	defer rows.Close()
	out := map[string]funds{}
	for rows.Next() {
		var id string
		var f funds
		if err := rows.Scan(&id, &f.Balance, &f.Frozen); err != nil {
			t.Fatalf("bank %s: accounts: %v", k.name, err)
		}
		out[id] = f
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("bank %s: accounts: %v", k.name, err)
	}
	return out
}

// CheckMoney checks that the bank holds exactly what the given settled
// transfers (actions of succeeded sagas, confirms of committed TCCs) took
// out of their accounts, that nothing is frozen, and that no money was
// created or lost.
func (k *bank) CheckMoney(t *testing.T, settled []transfer) {
	t.Helper()
	want := map[string]funds{}
	for id, v := range k.initial {
		want[id] = funds{Balance: v}
	}
	for _, tr := range settled {
		a, c := want[tr.Account], want[clearing]
		a.Balance -= tr.Amount
		c.Balance += tr.Amount
		want[tr.Account], want[clearing] = a, c
	}
	got := k.Accounts(t)
	var total, initial int64
	for _, v := range k.initial {
		initial += v
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := got[id]
		total += g.Balance + g.Frozen
		if g != want[id] {
			t.Errorf("bank %s: account %s = %+v, want %+v", k.name, id, g, want[id])
		}
		if g.Balance < 0 || g.Frozen < 0 {
			t.Errorf("bank %s: account %s is negative: %+v", k.name, id, g)
		}
	}
	if total != initial {
		t.Errorf("bank %s: money not conserved: %d in all accounts, started with %d", k.name, total, initial)
	}
}

// CheckNet checks that the bank is back where it started.
func (k *bank) CheckNet(t *testing.T) {
	t.Helper()
	k.CheckMoney(t, nil)
}
