package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// schemaVersion is the version of the tables this build reads and writes.
const schemaVersion = 1

// Migrate creates the tables if they are missing and checks the schema
// version. CREATE TABLE IF NOT EXISTS is atomic in MySQL, so concurrent
// runs are safe. The meta table came later without a version bump: it is
// only added, older builds ignore it, and Migrate creates it in a database
// made by an older build.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	idx := func(name string) string {
		return "`" + strings.ReplaceAll(s.opts.TablePrefix+name, "`", "``") + "`"
	}
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS " + s.t.records + ` (
			gid        VARBINARY(512) NOT NULL,
			mode       VARBINARY(255) NOT NULL,
			status     VARBINARY(255) NOT NULL,
			finished   BOOLEAN NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			owner      VARBINARY(255) NOT NULL DEFAULT '',
			version    BIGINT NOT NULL DEFAULT 0,
			data       LONGBLOB NOT NULL,
			PRIMARY KEY (gid),
			KEY ` + idx("created") + ` (created_at, gid),
			KEY ` + idx("status") + ` (status, created_at, gid),
			KEY ` + idx("mode") + ` (mode, created_at, gid),
			KEY ` + idx("unfinished") + ` (finished, gid),
			KEY ` + idx("finished") + ` (finished, updated_at, gid)
		) ENGINE=InnoDB`,
		"CREATE TABLE IF NOT EXISTS " + s.t.leases + ` (
			instance   VARBINARY(255) NOT NULL PRIMARY KEY,
			expires_at DATETIME(6) NOT NULL
		) ENGINE=InnoDB`,
		"CREATE TABLE IF NOT EXISTS " + s.t.meta + ` (
			mkey    VARBINARY(512) NOT NULL PRIMARY KEY,
			version BIGINT NOT NULL,
			value   MEDIUMBLOB NOT NULL
		) ENGINE=InnoDB`,
		"CREATE TABLE IF NOT EXISTS " + s.t.schema + " (id INT NOT NULL PRIMARY KEY, version INT NOT NULL) ENGINE=InnoDB",
		"INSERT INTO " + s.t.schema + fmt.Sprintf(" (id, version) VALUES (1, %d) ON DUPLICATE KEY UPDATE id = id", schemaVersion),
	}
	for _, stmt := range stmts {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return s.fail("migrate", err)
		}
	}
	var v int
	if err := s.db.QueryRowContext(ctx, "SELECT version FROM "+s.t.schema+" WHERE id = 1").Scan(&v); err != nil {
		return s.fail("migrate", err)
	}
	if v != schemaVersion {
		return fmt.Errorf("mysqlstore: schema version %d in %s, this build needs %d", v, s.t.schema, schemaVersion)
	}
	return nil
}

// Drop deletes the store's tables and everything in them. Tests use it to
// clean up.
func (s *Store) Drop(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+s.t.records+", "+s.t.leases+", "+s.t.meta+", "+s.t.schema); err != nil {
		return s.fail("drop", err)
	}
	return nil
}

// HasSchema reports whether the schema table exists with its row.
func (s *Store) HasSchema(ctx context.Context) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	var v int
	err := s.db.QueryRowContext(ctx, "SELECT version FROM "+s.t.schema+" WHERE id = 1").Scan(&v)
	var me *mysql.MySQLError
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows), errors.As(err, &me) && me.Number == 1146:
		return false, nil
	}
	return false, s.fail("schema", err)
}
