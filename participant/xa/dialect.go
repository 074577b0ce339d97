package xa

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-sql-driver/mysql"
)

// Dialect selects the database's XA statements and SQL spelling.
type Dialect int

// Supported dialects.
const (
	// MySQL is MySQL 8.0+ or MariaDB 10.5+ with InnoDB: the versions whose
	// prepared XA transactions survive the disconnection of the session
	// that prepared them, and that know SELECT ... FOR UPDATE NOWAIT.
	MySQL Dialect = iota + 1
	// Postgres is PostgreSQL with max_prepared_transactions > 0 (any
	// database/sql driver whose errors have a SQLState() string method,
	// such as pgx's stdlib adapter).
	Postgres
)

// String returns the dialect's name.
func (d Dialect) String() string {
	switch d {
	case MySQL:
		return "mysql"
	case Postgres:
		return "postgres"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

func (d Dialect) valid() bool { return d == MySQL || d == Postgres }

// Table names. The tables live in the participant's database, next to its
// business tables; CreateTable creates them.
const (
	// MarkerTable holds one row per branch, written inside the branch: it
	// commits if and only if the branch commits, so a present row proves
	// a commit that the database no longer remembers as a prepared XID.
	MarkerTable = "concord_xa"
	// AbortTable holds one row per aborted branch, committed outside any
	// branch, so that a prepare arriving after its abort is refused.
	AbortTable = "concord_xa_abort"
	// NameTable maps hashed XIDs back to their (gid, branch id), for
	// Recover; plain XIDs need no row.
	NameTable = "concord_xa_xid"
)

// maxIDLen bounds gid and branch id, in bytes: the width of the id columns
// (and the coordinator's own limit).
const maxIDLen = 128

func (d Dialect) ph(i int) string {
	if d == Postgres {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

// createSQL returns the idempotent DDL of the three tables.
func (d Dialect) createSQL() []string {
	if d == Postgres {
		return []string{
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid        VARCHAR(%d) NOT NULL,
	branch_id  VARCHAR(%[2]d) NOT NULL,
	xid        VARCHAR(%d) NOT NULL,
	created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	PRIMARY KEY (gid, branch_id)
)`, MarkerTable, maxIDLen, MaxXIDLen),
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid        VARCHAR(%d) NOT NULL,
	branch_id  VARCHAR(%[2]d) NOT NULL,
	created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	PRIMARY KEY (gid, branch_id)
)`, AbortTable, maxIDLen),
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	xid        VARCHAR(%d) NOT NULL PRIMARY KEY,
	gid        VARCHAR(%d) NOT NULL,
	branch_id  VARCHAR(%[3]d) NOT NULL,
	created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`, NameTable, MaxXIDLen, maxIDLen),
		}
	}
	// VARBINARY: ids compare byte for byte, never through a case- or
	// pad-insensitive collation.
	return []string{
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid        VARBINARY(%d) NOT NULL,
	branch_id  VARBINARY(%[2]d) NOT NULL,
	xid        VARBINARY(%d) NOT NULL,
	created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	PRIMARY KEY (gid, branch_id)
) ENGINE=InnoDB`, MarkerTable, maxIDLen, MaxXIDLen),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid        VARBINARY(%d) NOT NULL,
	branch_id  VARBINARY(%[2]d) NOT NULL,
	created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	PRIMARY KEY (gid, branch_id)
) ENGINE=InnoDB`, AbortTable, maxIDLen),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	xid        VARBINARY(%d) NOT NULL PRIMARY KEY,
	gid        VARBINARY(%d) NOT NULL,
	branch_id  VARBINARY(%[3]d) NOT NULL,
	created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB`, NameTable, MaxXIDLen, maxIDLen),
	}
}

func (d Dialect) insertMarkerSQL() string {
	return "INSERT INTO " + MarkerTable + " (gid, branch_id, xid) VALUES (" +
		d.ph(1) + ", " + d.ph(2) + ", " + d.ph(3) + ")"
}

// insertIfAbsentSQL returns an insert of cols that does nothing when the
// key exists.
func (d Dialect) insertIfAbsentSQL(table, cols string, n int) string {
	vals := ""
	for i := 1; i <= n; i++ {
		if i > 1 {
			vals += ", "
		}
		vals += d.ph(i)
	}
	if d == Postgres {
		return "INSERT INTO " + table + " (" + cols + ") VALUES (" + vals + ") ON CONFLICT DO NOTHING"
	}
	return "INSERT IGNORE INTO " + table + " (" + cols + ") VALUES (" + vals + ")"
}

func (d Dialect) insertAbortSQL() string {
	return d.insertIfAbsentSQL(AbortTable, "gid, branch_id", 2)
}

func (d Dialect) insertNameSQL() string {
	return d.insertIfAbsentSQL(NameTable, "xid, gid, branch_id", 3)
}

func (d Dialect) countSQL(table string) string {
	return "SELECT COUNT(*) FROM " + table + " WHERE gid = " + d.ph(1) + " AND branch_id = " + d.ph(2)
}

func (d Dialect) nameSQL() string {
	return "SELECT gid, branch_id FROM " + NameTable + " WHERE xid = " + d.ph(1)
}

// lockKey is the PostgreSQL advisory lock that a branch's prepare holds
// from its first statement until the prepared transaction ends (prepared
// transactions keep their transaction-level locks).
func lockKey(xid string) int64 {
	sum := sha256.Sum256([]byte("concord/xa lock\x00" + xid))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// quote returns xid as a SQL string literal. XID's alphabet has no quote
// or backslash; quote checks anyway, since the XA statements take no bind
// parameters.
func quote(xid string) (string, error) {
	if !ours(xid) {
		return "", fmt.Errorf("xa: %q is not an XID of this package", xid)
	}
	for i := 0; i < len(xid); i++ {
		if c := xid[i]; !idByte(c) && c != '/' && c != '#' {
			return "", fmt.Errorf("xa: XID %q contains %q", xid, c)
		}
	}
	return "'" + xid + "'", nil
}

// Error classification. MySQL errors are matched by number, PostgreSQL
// errors by SQLSTATE through the SQLState method pgx and lib/pq provide.
const (
	myDupKey   = 1062 // ER_DUP_ENTRY
	myLockWait = 1205 // ER_LOCK_WAIT_TIMEOUT (MariaDB's NOWAIT failure)
	myNOTA     = 1397 // XAER_NOTA: unknown XID
	myRMFAIL   = 1399 // XAER_RMFAIL: wrong state for the command
	myDUPID    = 1440 // XAER_DUPID: the XID exists (active or prepared)
	myNoWait   = 3572 // ER_LOCK_NOWAIT (MySQL 8's NOWAIT failure)

	pgUniqueViolation = "23505"
	pgUndefinedObject = "42704" // prepared transaction does not exist
	pgNotInState      = "55000" // prepared transaction is busy
	pgLockUnavailable = "55P03"
)

func mysqlNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

func sqlState(err error) string {
	var se interface{ SQLState() string }
	if errors.As(err, &se) {
		return se.SQLState()
	}
	return ""
}

// isDuplicateKey reports a unique-key violation.
func (d Dialect) isDuplicateKey(err error) bool {
	if d == Postgres {
		return sqlState(err) == pgUniqueViolation
	}
	return mysqlNumber(err) == myDupKey
}

// isUnknownXID reports that the database knows no prepared transaction by
// that name (for MySQL: none it lets this session end).
func (d Dialect) isUnknownXID(err error) bool {
	if d == Postgres {
		return sqlState(err) == pgUndefinedObject
	}
	return mysqlNumber(err) == myNOTA
}

// isXIDBusy reports that another session is working on the XID.
func (d Dialect) isXIDBusy(err error) bool {
	if d == Postgres {
		return sqlState(err) == pgNotInState
	}
	return mysqlNumber(err) == myRMFAIL
}

// isLockBusy reports a lock that NOWAIT (or a lock timeout) did not get.
func (d Dialect) isLockBusy(err error) bool {
	if d == Postgres {
		return sqlState(err) == pgLockUnavailable
	}
	n := mysqlNumber(err)
	return n == myLockWait || n == myNoWait
}
