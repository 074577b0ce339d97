package twophase

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/concordtm/concord/participant"
)

// maxIDLen bounds gid and branch id, in bytes: the width of the id columns
// (and the coordinator's own limit).
const maxIDLen = 128

// queries are the statements of one Store, spelled for its dialect.
type queries struct {
	create  string
	insert  string // gid, branch_id, state, intent, prepared_at, decided_at, peers; if absent
	read    string // state, intent of gid, branch_id; shared locking read
	lock    string // state, intent of gid, branch_id; exclusive locking read
	decide  string // state, decided_at, gid, branch_id
	pending string // gid, branch_id, intent, prepared_at of every prepared row
	// gid, branch_id, intent, prepared_at of every precommitted (3PC) row
	precommitted string
	state        string // state of gid, branch_id
	peers        string // peers of gid, branch_id
	hasPeers     string // fails on a table without the peers column
	addPeers     string // adds the peers column to an older table
}

func validDialect(d participant.Dialect) bool {
	return d == participant.Postgres || d == participant.MySQL || d == participant.SQLite
}

// rebind turns the ? placeholders of q into PostgreSQL's $1, $2, ….
func rebind(d participant.Dialect, q string) string {
	if d != participant.Postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func newQueries(d participant.Dialect, table string) queries {
	var q queries
	switch d {
	case participant.Postgres:
		q.create = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid         VARCHAR(%d) NOT NULL,
	branch_id   VARCHAR(%[2]d) NOT NULL,
	state       VARCHAR(16) NOT NULL,
	intent      BYTEA,
	prepared_at BIGINT NOT NULL,
	decided_at  BIGINT NOT NULL,
	peers       TEXT,
	PRIMARY KEY (gid, branch_id)
)`, table, maxIDLen)
	case participant.MySQL:
		// VARBINARY: identifiers compare byte for byte.
		q.create = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid         VARBINARY(%d) NOT NULL,
	branch_id   VARBINARY(%[2]d) NOT NULL,
	state       VARBINARY(16) NOT NULL,
	intent      LONGBLOB,
	prepared_at BIGINT NOT NULL,
	decided_at  BIGINT NOT NULL,
	peers       LONGBLOB,
	PRIMARY KEY (gid, branch_id)
) ENGINE=InnoDB`, table, maxIDLen)
	default:
		q.create = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	gid         TEXT NOT NULL,
	branch_id   TEXT NOT NULL,
	state       TEXT NOT NULL,
	intent      BLOB,
	prepared_at INTEGER NOT NULL,
	decided_at  INTEGER NOT NULL,
	peers       TEXT,
	PRIMARY KEY (gid, branch_id)
)`, table)
	}
	q.hasPeers = "SELECT peers FROM " + table + " WHERE 1 = 0"
	q.addPeers = "ALTER TABLE " + table + " ADD COLUMN peers TEXT"
	if d == participant.MySQL {
		q.addPeers = "ALTER TABLE " + table + " ADD COLUMN peers LONGBLOB"
	}

	const cols = " (gid, branch_id, state, intent, prepared_at, decided_at, peers) VALUES (?, ?, ?, ?, ?, ?, ?)"
	switch d {
	case participant.Postgres:
		q.insert = "INSERT INTO " + table + cols + " ON CONFLICT DO NOTHING"
	case participant.MySQL:
		q.insert = "INSERT IGNORE INTO " + table + cols
	default:
		q.insert = "INSERT OR IGNORE INTO " + table + cols
	}

	sel := "SELECT state, intent FROM " + table + " WHERE gid = ? AND branch_id = ?"
	q.read, q.lock = sel, sel // SQLite: the immediate transaction already excludes writers
	switch d {
	case participant.Postgres:
		q.read, q.lock = sel+" FOR SHARE", sel+" FOR UPDATE"
	case participant.MySQL:
		q.read, q.lock = sel+" LOCK IN SHARE MODE", sel+" FOR UPDATE"
	}
	q.decide = "UPDATE " + table + " SET state = ?, decided_at = ? WHERE gid = ? AND branch_id = ?"
	q.pending = "SELECT gid, branch_id, intent, prepared_at FROM " + table +
		" WHERE state = '" + string(StatePrepared) + "' ORDER BY prepared_at, gid, branch_id"
	q.precommitted = "SELECT gid, branch_id, intent, prepared_at FROM " + table +
		" WHERE state = '" + string(StatePreCommitted) + "' ORDER BY prepared_at, gid, branch_id"
	q.state = "SELECT state FROM " + table + " WHERE gid = ? AND branch_id = ?"
	q.peers = "SELECT peers FROM " + table + " WHERE gid = ? AND branch_id = ?"

	for _, p := range []*string{&q.insert, &q.read, &q.lock, &q.decide, &q.state, &q.peers} {
		*p = rebind(d, *p)
	}
	return q
}
