package demo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/concordtm/concord/participant"
)

// The shop's opening state: 10 T-shirts in stock, two customers.
const (
	sku        = "T-shirt"
	price      = 15
	startStock = 10
)

var startBalances = []struct {
	user    string
	balance int
}{{"A", 3000}, {"B", 100}}

// Every service serves both protocols: a saga's action and compensation,
// and TCC's try, confirm and cancel.
const (
	pathSaga    = "/saga/"
	pathTry     = "/tcc/try"
	pathConfirm = "/tcc/confirm"
	pathCancel  = "/tcc/cancel"
)

// ---- order service: one row per order ----

var orderSchema = []string{`CREATE TABLE orders (
	id     INTEGER PRIMARY KEY,
	user   TEXT    NOT NULL,
	sku    TEXT    NOT NULL,
	qty    INTEGER NOT NULL,
	amount INTEGER NOT NULL,
	status TEXT    NOT NULL
)`}

var orderRoutes = []route{
	{pathSaga + "create", participant.OpAction, createOrder("created")},
	{pathSaga + "cancel", participant.OpCompensate, deleteOrder},
	{pathTry, participant.OpTry, createOrder("pending")},
	{pathConfirm, participant.OpConfirm, confirmOrder},
	{pathCancel, participant.OpCancel, deleteOrder},
}

func createOrder(status string) step {
	return func(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO orders (id, user, sku, qty, amount, status)
			VALUES (?, ?, ?, ?, ?, ?)`, p.Order, p.User, p.SKU, p.Qty, p.Amount, status)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("create order #%d for %s: %d × %s, %d (%s)", p.Order, p.User, p.Qty, p.SKU, p.Amount, status), nil
	}
}

func confirmOrder(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
	if err := execOne(ctx, tx, `UPDATE orders SET status = 'confirmed' WHERE id = ?`, p.Order); err != nil {
		return "", err
	}
	return fmt.Sprintf("order #%d: pending → confirmed", p.Order), nil
}

func deleteOrder(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
	if err := execOne(ctx, tx, `DELETE FROM orders WHERE id = ?`, p.Order); err != nil {
		return "", err
	}
	return fmt.Sprintf("delete order #%d", p.Order), nil
}

// ---- inventory service: available and reserved quantity per item ----

var stockSchema = []string{
	`CREATE TABLE stock (
	sku      TEXT    PRIMARY KEY,
	qty      INTEGER NOT NULL CHECK (qty >= 0),
	reserved INTEGER NOT NULL CHECK (reserved >= 0)
)`,
	fmt.Sprintf(`INSERT INTO stock (sku, qty, reserved) VALUES ('%s', %d, 0)`, sku, startStock),
}

var stockRoutes = []route{
	{pathSaga + "reserve", participant.OpAction, takeStock(false)},
	{pathSaga + "release", participant.OpCompensate, returnStock(false)},
	{pathTry, participant.OpTry, takeStock(true)},
	{pathConfirm, participant.OpConfirm, shipReserved},
	{pathCancel, participant.OpCancel, returnStock(true)},
}

// takeStock removes p.Qty items from the available quantity, or says no if
// there are not enough. With reserve (TCC) it moves them to reserved.
func takeStock(reserve bool) step {
	return func(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
		var have, reserved int
		err := tx.QueryRowContext(ctx, `SELECT qty, reserved FROM stock WHERE sku = ?`, p.SKU).Scan(&have, &reserved)
		if errors.Is(err, sql.ErrNoRows) {
			return "", participant.Reject("no such item %q", p.SKU)
		}
		if err != nil {
			return "", err
		}
		if have < p.Qty {
			return "", participant.Reject("stock short: have %d, want %d", have, p.Qty)
		}
		if !reserve {
			err := execOne(ctx, tx, `UPDATE stock SET qty = qty - ? WHERE sku = ?`, p.Qty, p.SKU)
			return fmt.Sprintf("take %d × %s from stock: %d → %d", p.Qty, p.SKU, have, have-p.Qty), err
		}
		err = execOne(ctx, tx, `UPDATE stock SET qty = qty - ?, reserved = reserved + ? WHERE sku = ?`, p.Qty, p.Qty, p.SKU)
		return fmt.Sprintf("reserve %d × %s: qty %d → %d, reserved %d → %d",
			p.Qty, p.SKU, have, have-p.Qty, reserved, reserved+p.Qty), err
	}
}

// returnStock undoes takeStock.
func returnStock(reserved bool) step {
	return func(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
		if !reserved {
			err := execOne(ctx, tx, `UPDATE stock SET qty = qty + ? WHERE sku = ?`, p.Qty, p.SKU)
			return fmt.Sprintf("put %d × %s back into stock", p.Qty, p.SKU), err
		}
		err := execOne(ctx, tx, `UPDATE stock SET qty = qty + ?, reserved = reserved - ? WHERE sku = ?`, p.Qty, p.Qty, p.SKU)
		return fmt.Sprintf("release %d reserved × %s back into stock", p.Qty, p.SKU), err
	}
}

func shipReserved(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
	err := execOne(ctx, tx, `UPDATE stock SET reserved = reserved - ? WHERE sku = ?`, p.Qty, p.SKU)
	return fmt.Sprintf("ship the %d reserved × %s (reserved -%d)", p.Qty, p.SKU, p.Qty), err
}

// ---- payment service: spendable and frozen balance per customer ----

var accountSchema = func() []string {
	s := []string{`CREATE TABLE accounts (
	user    TEXT    PRIMARY KEY,
	balance INTEGER NOT NULL CHECK (balance >= 0),
	frozen  INTEGER NOT NULL CHECK (frozen >= 0)
)`}
	for _, a := range startBalances {
		s = append(s, fmt.Sprintf(`INSERT INTO accounts (user, balance, frozen) VALUES ('%s', %d, 0)`, a.user, a.balance))
	}
	return s
}()

var accountRoutes = []route{
	{pathSaga + "charge", participant.OpAction, charge(false)},
	{pathSaga + "refund", participant.OpCompensate, refund(false)},
	{pathTry, participant.OpTry, charge(true)},
	{pathConfirm, participant.OpConfirm, settleFrozen},
	{pathCancel, participant.OpCancel, refund(true)},
}

// charge takes p.Amount from the user's balance, or says no if it is too
// low. With freeze (TCC) it moves the amount to frozen.
func charge(freeze bool) step {
	return func(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
		var balance, frozen int
		err := tx.QueryRowContext(ctx, `SELECT balance, frozen FROM accounts WHERE user = ?`, p.User).Scan(&balance, &frozen)
		if errors.Is(err, sql.ErrNoRows) {
			return "", participant.Reject("no account for %q", p.User)
		}
		if err != nil {
			return "", err
		}
		if balance < p.Amount {
			return "", participant.Reject("balance short: have %d, want %d", balance, p.Amount)
		}
		if !freeze {
			err := execOne(ctx, tx, `UPDATE accounts SET balance = balance - ? WHERE user = ?`, p.Amount, p.User)
			return fmt.Sprintf("charge %s %d: balance %d → %d", p.User, p.Amount, balance, balance-p.Amount), err
		}
		err = execOne(ctx, tx, `UPDATE accounts SET balance = balance - ?, frozen = frozen + ? WHERE user = ?`,
			p.Amount, p.Amount, p.User)
		return fmt.Sprintf("freeze %d of %s's money: balance %d → %d, frozen %d → %d",
			p.Amount, p.User, balance, balance-p.Amount, frozen, frozen+p.Amount), err
	}
}

// refund undoes charge.
func refund(frozen bool) step {
	return func(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
		if !frozen {
			err := execOne(ctx, tx, `UPDATE accounts SET balance = balance + ? WHERE user = ?`, p.Amount, p.User)
			return fmt.Sprintf("refund %d to %s", p.Amount, p.User), err
		}
		err := execOne(ctx, tx, `UPDATE accounts SET balance = balance + ?, frozen = frozen - ? WHERE user = ?`,
			p.Amount, p.Amount, p.User)
		return fmt.Sprintf("unfreeze %d back into %s's balance", p.Amount, p.User), err
	}
}

func settleFrozen(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
	err := execOne(ctx, tx, `UPDATE accounts SET frozen = frozen - ? WHERE user = ?`, p.Amount, p.User)
	return fmt.Sprintf("collect the %d frozen for %s (frozen -%d)", p.Amount, p.User, p.Amount), err
}

// execOne runs a statement that must change exactly one row. Anything else
// means the row the barrier promised is missing: an error, so the
// coordinator retries and the local transaction rolls back.
func execOne(ctx context.Context, tx *sql.Tx, q string, args ...any) error {
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%q changed %d rows, want 1", q, n)
	}
	return nil
}
