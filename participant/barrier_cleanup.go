package participant

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// barrierDeleteBatch bounds the rows one DELETE of DeleteOlderThan removes,
// so that no statement holds many row locks or a long write lock.
const barrierDeleteBatch = 1000

// DeleteOlderThan deletes the barrier rows created more than age ago, by
// the database's clock (the clock that stamped created_at), in batches of
// barrierDeleteBatch rows, and returns how many rows it deleted. Run it
// periodically (say, daily) with a retention of days, not minutes.
//
// A deleted row no longer protects its operation. A call for that branch
// that arrives afterwards looks new: a late action runs although its
// compensation already ran (hanging), a repeated compensation runs again,
// and a message's check-back answers that the local transaction rolled
// back. So age must exceed the longest time the coordinator may still call
// the branch: the transaction's deadline (Timeout) plus its retry horizon
// (MaxTotalAttempts spaced by up to RetryMax, and, for a stuck transaction,
// however long an operator may take before `concord tx retry`), plus the
// longest a request may sit in a network or queue. A transaction the
// coordinator has forgotten (retention of finished transactions) can no
// longer send calls.
func (br *Barrier) DeleteOlderThan(ctx context.Context, age time.Duration) (int64, error) {
	if age <= 0 {
		return 0, errors.New("participant: DeleteOlderThan: age must be positive")
	}
	q, arg := br.dialect.deleteOldSQL(br.table, age)
	var total int64
	for {
		res, err := br.db.ExecContext(ctx, q, arg)
		if err != nil {
			return total, fmt.Errorf("participant: delete old barrier rows from %s: %w", br.table, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("participant: delete old barrier rows from %s: %w", br.table, err)
		}
		total += n
		if n < barrierDeleteBatch {
			return total, nil
		}
	}
}

// deleteOldSQL returns a statement that deletes up to barrierDeleteBatch
// rows created before the database's now minus age, and its argument.
func (d Dialect) deleteOldSQL(table string, age time.Duration) (string, any) {
	limit := strconv.Itoa(barrierDeleteBatch)
	switch d {
	case Postgres:
		return "DELETE FROM " + table + " WHERE ctid IN (SELECT ctid FROM " + table +
			" WHERE created_at < now() - $1 * interval '1 microsecond' LIMIT " + limit + ")", age.Microseconds()
	case MySQL:
		return "DELETE FROM " + table + " WHERE created_at < NOW(6) - INTERVAL ? MICROSECOND LIMIT " + limit, age.Microseconds()
	default:
		// created_at is CURRENT_TIMESTAMP's 'YYYY-MM-DD HH:MM:SS' (UTC),
		// which datetime() also writes: the strings compare as times.
		return "DELETE FROM " + table + " WHERE rowid IN (SELECT rowid FROM " + table +
			" WHERE created_at < datetime('now', ?) LIMIT " + limit + ")", "-" + strconv.FormatInt(int64(age/time.Second), 10) + " seconds"
	}
}

// createdAtIndex returns the name of the barrier table's created_at index,
// which DeleteOlderThan uses (unqualified: the index lives in the table's
// schema), and the table name without its schema.
func createdAtIndex(table string) (index, schema, bare string) {
	bare = table
	if i := strings.IndexByte(table, '.'); i >= 0 {
		schema, bare = table[:i], table[i+1:]
	}
	return bare + "_created_at", schema, bare
}

// createIndex adds the created_at index to the barrier table if it lacks
// it (a table created by an older release has none).
func (br *Barrier) createIndex(ctx context.Context) error {
	index, schema, bare := createdAtIndex(br.table)
	var q string
	switch br.dialect {
	case Postgres:
		q = "CREATE INDEX IF NOT EXISTS " + index + " ON " + br.table + " (created_at)"
	case SQLite:
		if schema != "" {
			index = schema + "." + index
		}
		q = "CREATE INDEX IF NOT EXISTS " + index + " ON " + bare + " (created_at)"
	case MySQL:
		// MySQL has no CREATE INDEX IF NOT EXISTS (MariaDB has).
		var n int
		err := br.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.statistics
			WHERE table_schema = COALESCE(NULLIF(?, ''), DATABASE()) AND table_name = ? AND index_name = ?`,
			schema, bare, index).Scan(&n)
		if err != nil {
			return fmt.Errorf("participant: barrier table %s: look up index: %w", br.table, err)
		}
		if n > 0 {
			return nil
		}
		q = "ALTER TABLE " + br.table + " ADD INDEX " + index + " (created_at)"
	}
	if _, err := br.db.ExecContext(ctx, q); err != nil {
		m := err.Error()
		if br.dialect == MySQL && strings.Contains(m, "Error 1061") ||
			br.dialect == Postgres && strings.Contains(m, "23505") {
			// Another process created it at the same moment: MySQL's
			// duplicate key name, or PostgreSQL's race of two CREATE INDEX
			// IF NOT EXISTS on the catalog's unique index.
			return nil
		}
		return fmt.Errorf("participant: barrier table %s: create index on created_at: %w", br.table, err)
	}
	return nil
}
