package bank

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/participant"
)

// leg is the payload of every branch: one side of a transfer at one bank.
type leg struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

// The branch ids of every transfer: money leaves the debit side's account
// and arrives in the credit side's.
const (
	debit  = "debit"
	credit = "credit"
)

// bank is a participant service over one real database. Its operations
// (the URL path names the operation; the Concord-Op header must agree):
//
//	debit  action:  balance -= amount (refused without the funds)
//	debit  compensate: balance += amount
//	credit action:  balance += amount
//	credit compensate: balance -= amount (may go below zero: a compensation
//	                   must not fail)
//	debit  try:     balance -= amount, frozen += amount (refused without the funds)
//	debit  confirm: frozen -= amount (the money has left the bank)
//	debit  cancel:  frozen -= amount, balance += amount
//	credit try:     pending += amount
//	credit confirm: pending -= amount, balance += amount
//	credit cancel:  pending -= amount
//
// Each operation runs inside the barrier's local transaction together with
// a ledger row, so the ledger is the exact list of operations that took
// effect (repeats included, if the barrier ever let one through).
type bank struct {
	name    string
	dialect participant.Dialect
	db      *sql.DB
	barrier *participant.Barrier
	accts   string // table names, unique to this run
	ledger  string
	brTable string
	initial map[string]int64
	faults  *faults
	srv     *httptest.Server
}

// newBank creates the bank's tables in db, named after prefix, with the
// given accounts, and serves it on loopback (through the fault injector)
// until the test ends. The tables are dropped at the end unless the test
// failed, so that a failure can be looked at.
func newBank(t *testing.T, name string, db *sql.DB, d participant.Dialect, prefix string, accounts map[string]int64, f *faults) *bank {
	t.Helper()
	db.SetMaxOpenConns(24)
	db.SetMaxIdleConns(24)
	k := &bank{
		name: name, dialect: d, db: db, faults: f, initial: accounts,
		accts: prefix + "_acct", ledger: prefix + "_ledger", brTable: prefix + "_barrier",
	}
	ctx := t.Context()
	for _, q := range []string{
		`CREATE TABLE ` + k.accts + ` (
			id      VARCHAR(32) PRIMARY KEY,
			balance BIGINT NOT NULL,
			frozen  BIGINT NOT NULL DEFAULT 0,
			pending BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE TABLE ` + k.ledger + ` (
			gid     VARCHAR(128) NOT NULL,
			branch  VARCHAR(32) NOT NULL,
			op      VARCHAR(16) NOT NULL,
			account VARCHAR(32) NOT NULL,
			amount  BIGINT NOT NULL,
			at      VARCHAR(40) NOT NULL
		)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("bank %s: %v", name, err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bank %s: kept tables %s, %s and %s for inspection", name, k.accts, k.ledger, k.brTable)
			return
		}
		db.Exec("DROP TABLE IF EXISTS " + k.accts)
		db.Exec("DROP TABLE IF EXISTS " + k.ledger)
		db.Exec("DROP TABLE IF EXISTS " + k.brTable)
	})
	for id, v := range accounts {
		if _, err := db.ExecContext(ctx, k.q(`INSERT INTO `+k.accts+` (id, balance) VALUES (?, ?)`), id, v); err != nil {
			t.Fatalf("bank %s: %v", name, err)
		}
	}
	var err error
	k.barrier, err = participant.NewBarrier(db, d, participant.WithBarrierTable(k.brTable))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.barrier.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	k.srv = httptest.NewServer(f.wrap(name, participant.Handler(k.serve)))
	t.Cleanup(k.srv.Close)
	return k
}

// URL returns the URL of op at this bank.
func (k *bank) URL(op participant.Op) string { return k.srv.URL + "/" + string(op) }

// q rewrites the ? placeholders of query for the bank's database.
func (k *bank) q(query string) string {
	if k.dialect != participant.Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// serve is the participant.HandlerFunc of every operation: the fault the
// injector drew for this call (in ctx) decides whether and when it applies.
func (k *bank) serve(ctx context.Context, b participant.Branch, payload []byte) error {
	var lg leg
	if err := json.Unmarshal(payload, &lg); err != nil {
		return fmt.Errorf("bank %s: %s %s/%s: bad payload %q: %v", k.name, b.Op, b.GID, b.BranchID, payload, err)
	}
	f := faultOf(ctx)
	switch f {
	case faultFailBefore:
		return fmt.Errorf("bank %s: injected failure before applying", k.name)
	case faultHang:
		// Never answers and never applies: the caller gives up (branch
		// timeout) or dies.
		select {
		case <-ctx.Done():
		case <-time.After(hangCap):
		}
		return fmt.Errorf("bank %s: injected hang", k.name)
	case faultLate:
		// Outlive the caller's patience, then apply anyway: the late
		// landing of a call whose outcome the coordinator could not know.
		time.Sleep(k.faults.lateDelay())
		ctx = context.WithoutCancel(ctx)
	}
	err := k.barrier.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
		if f == faultReject {
			return participant.Reject("bank %s: injected refusal of %s", k.name, b.Op)
		}
		return k.apply(ctx, tx, b, lg)
	})
	if err == nil && f == faultFailAfter {
		return fmt.Errorf("bank %s: injected failure after applying", k.name)
	}
	return err
}

// errNoFunds is the business refusal of a debit the account cannot cover.
var errNoFunds = errors.New("insufficient funds")

// apply moves the money of one operation and writes its ledger row.
func (k *bank) apply(ctx context.Context, tx *sql.Tx, b participant.Branch, lg leg) error {
	type move struct {
		set  string // SET clause, with one ? per amount
		cond string // extra WHERE condition with one ? for the amount, or ""
	}
	var m move
	switch side := b.BranchID; {
	case side == debit && b.Op == participant.OpAction:
		m = move{"balance = balance - ?", "balance >= ?"}
	case side == debit && b.Op == participant.OpCompensate:
		m = move{"balance = balance + ?", ""}
	case side == credit && b.Op == participant.OpAction:
		m = move{"balance = balance + ?", ""}
	case side == credit && b.Op == participant.OpCompensate:
		m = move{"balance = balance - ?", ""}
	case side == debit && b.Op == participant.OpTry:
		m = move{"balance = balance - ?, frozen = frozen + ?", "balance >= ?"}
	case side == debit && b.Op == participant.OpConfirm:
		m = move{"frozen = frozen - ?", ""}
	case side == debit && b.Op == participant.OpCancel:
		m = move{"frozen = frozen - ?, balance = balance + ?", ""}
	case side == credit && b.Op == participant.OpTry:
		m = move{"pending = pending + ?", ""}
	case side == credit && b.Op == participant.OpConfirm:
		m = move{"pending = pending - ?, balance = balance + ?", ""}
	case side == credit && b.Op == participant.OpCancel:
		m = move{"pending = pending - ?", ""}
	default:
		return fmt.Errorf("bank %s: no operation %s on branch %q", k.name, b.Op, b.BranchID)
	}
	query := "UPDATE " + k.accts + " SET " + m.set + " WHERE id = ?"
	var args []any
	for range strings.Count(m.set, "?") {
		args = append(args, lg.Amount)
	}
	args = append(args, lg.Account)
	if m.cond != "" {
		query += " AND " + m.cond
		args = append(args, lg.Amount)
	}
	res, err := tx.ExecContext(ctx, k.q(query), args...)
	if err != nil {
		return fmt.Errorf("bank %s: %s: %w", k.name, b.Op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("bank %s: %s: %w", k.name, b.Op, err)
	}
	if n != 1 {
		if m.cond != "" {
			k.faults.noFunds.Add(1)
			return participant.Reject("bank %s: %s of %d from %s: %v", k.name, b.Op, lg.Amount, lg.Account, errNoFunds)
		}
		return fmt.Errorf("bank %s: %s: account %s: %d rows", k.name, b.Op, lg.Account, n)
	}
	_, err = tx.ExecContext(ctx, k.q(`INSERT INTO `+k.ledger+` (gid, branch, op, account, amount, at) VALUES (?, ?, ?, ?, ?, ?)`),
		b.GID, b.BranchID, string(b.Op), lg.Account, lg.Amount, time.Now().UTC().Format("15:04:05.000000"))
	if err != nil {
		return fmt.Errorf("bank %s: ledger: %w", k.name, err)
	}
	return nil
}

// opKey names one operation of one branch.
type opKey struct {
	GID, Branch string
	Op          participant.Op
}

// Applied reads the ledger: how many times each operation took effect.
func (k *bank) Applied(t *testing.T) map[opKey]int {
	t.Helper()
	rows, err := k.db.QueryContext(t.Context(), `SELECT gid, branch, op, COUNT(*) FROM `+k.ledger+` GROUP BY gid, branch, op`)
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

// account is one account's money.
type account struct{ Balance, Frozen, Pending int64 }

// Accounts reads every account.
func (k *bank) Accounts(t *testing.T) map[string]account {
	t.Helper()
	rows, err := k.db.QueryContext(t.Context(), `SELECT id, balance, frozen, pending FROM `+k.accts)
	if err != nil {
		t.Fatalf("bank %s: accounts: %v", k.name, err)
	}
	defer rows.Close()
	out := map[string]account{}
	for rows.Next() {
		var id string
		var a account
		if err := rows.Scan(&id, &a.Balance, &a.Frozen, &a.Pending); err != nil {
			t.Fatalf("bank %s: accounts: %v", k.name, err)
		}
		out[id] = a
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("bank %s: accounts: %v", k.name, err)
	}
	return out
}

// Rows renders the ledger and barrier rows of gid, for failure reports.
func (k *bank) Rows(ctx context.Context, gid string) string {
	var b strings.Builder
	dump := func(title, query string) {
		rows, err := k.db.QueryContext(ctx, k.q(query), gid)
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", title, err)
			return
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				fmt.Fprintf(&b, "  %s: %v\n", title, err)
				return
			}
			var f []string
			for i, c := range cols {
				f = append(f, c+"="+vals[i].String)
			}
			lines = append(lines, "    "+strings.Join(f, " "))
		}
		sort.Strings(lines)
		fmt.Fprintf(&b, "  %s %s (%d rows)\n", k.name, title, len(lines))
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	dump("ledger", `SELECT branch, op, account, amount, at FROM `+k.ledger+` WHERE gid = ?`)
	dump("barrier", `SELECT branch_id, op, reason, created_at FROM `+k.brTable+` WHERE gid = ?`)
	return b.String()
}
