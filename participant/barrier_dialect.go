package participant

import (
	"fmt"
	"strconv"
)

// Dialect selects the SQL spelling the barrier uses for its table.
type Dialect int

// Supported dialects.
const (
	// Postgres is PostgreSQL (any driver, e.g. pgx's database/sql adapter).
	Postgres Dialect = iota + 1
	// MySQL is MySQL or MariaDB with InnoDB.
	MySQL
	// SQLite is SQLite 3. Open it with a busy timeout (and preferably WAL
	// and immediate transactions, e.g. modernc.org/sqlite's
	// "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	// so that concurrent deliveries wait for each other instead of failing
	// with SQLITE_BUSY.
	SQLite
)

// String returns the dialect's name.
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case MySQL:
		return "mysql"
	case SQLite:
		return "sqlite"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

func (d Dialect) valid() bool { return d == Postgres || d == MySQL || d == SQLite }

// placeholder returns the bind parameter for the i-th argument (1-based).
func (d Dialect) placeholder(i int) string {
	if d == Postgres {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

// maxIDLen bounds gid and branch id, in bytes. It matches the column width
// of every dialect, so that no database ever truncates an identifier (MySQL's
// INSERT IGNORE would otherwise turn truncation into a silent collision).
const maxIDLen = 128

// createTableSQL returns the idempotent DDL for the barrier table.
//
// The primary key (gid, branch_id, op) is the unique key that serializes
// concurrent deliveries. reason records which operation caused the row: the
// operation itself, or, for a forward row written by a null compensation,
// the backward operation that arrived first.
func (d Dialect) createTableSQL(table string) string {
	switch d {
	case Postgres:
		return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid        VARCHAR(%d) NOT NULL,
	branch_id  VARCHAR(%[2]d) NOT NULL,
	op         VARCHAR(16)  NOT NULL,
	reason     VARCHAR(16)  NOT NULL,
	created_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
	PRIMARY KEY (gid, branch_id, op)
)`, table, maxIDLen)
	case MySQL:
		// VARBINARY: identifiers compare byte for byte, not through a
		// case- and pad-insensitive collation.
		return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid        VARBINARY(%d) NOT NULL,
	branch_id  VARBINARY(%[2]d) NOT NULL,
	op         VARBINARY(16)  NOT NULL,
	reason     VARBINARY(16)  NOT NULL,
	created_at DATETIME(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	PRIMARY KEY (gid, branch_id, op)
) ENGINE=InnoDB`, table, maxIDLen)
	default:
		return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid        TEXT NOT NULL,
	branch_id  TEXT NOT NULL,
	op         TEXT NOT NULL,
	reason     TEXT NOT NULL,
	created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
	PRIMARY KEY (gid, branch_id, op)
)`, table)
	}
}

// insertSQL returns an insert-if-absent statement taking gid, branch_id, op
// and reason. It affects one row if it inserted and zero if the key existed;
// when the key belongs to a transaction still in progress, the statement
// waits for that transaction to end.
func (d Dialect) insertSQL(table string) string {
	const cols = "(gid, branch_id, op, reason) VALUES "
	switch d {
	case Postgres:
		return "INSERT INTO " + table + " " + cols + "($1, $2, $3, $4) ON CONFLICT DO NOTHING"
	case MySQL:
		return "INSERT IGNORE INTO " + table + " " + cols + "(?, ?, ?, ?)"
	default:
		return "INSERT OR IGNORE INTO " + table + " " + cols + "(?, ?, ?, ?)"
	}
}

// reasonSQL returns the query that reads the reason of an existing row. It
// is a locking read where the database has one, so that it sees the latest
// committed row whatever the isolation level; a shared lock, because the
// insert that found the row already holds one and two transactions upgrading
// to exclusive locks would deadlock.
func (d Dialect) reasonSQL(table string) string {
	q := "SELECT reason FROM " + table + " WHERE gid = " + d.placeholder(1) +
		" AND branch_id = " + d.placeholder(2) + " AND op = " + d.placeholder(3)
	switch d {
	case Postgres:
		return q + " FOR SHARE"
	case MySQL:
		return q + " LOCK IN SHARE MODE"
	default:
		return q
	}
}
