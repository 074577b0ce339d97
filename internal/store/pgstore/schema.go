package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// schemaVersion is the version of the tables this build reads and writes.
const schemaVersion = 1

// migrateAttempts bounds the retries of Migrate when another process
// creates the same objects at the same moment.
const migrateAttempts = 5

// ddl returns the statements that create version 1 of the schema, each
// idempotent. The meta table came later without a version bump: it is only
// added, older builds ignore it, and Migrate creates it in a database made
// by an older build.
func (s *Store) ddl() []string {
	o := s.opts
	idx := func(name string) string { return pgx.Identifier{o.TablePrefix + name}.Sanitize() }
	var stmts []string
	if o.Schema != "" {
		stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{o.Schema}.Sanitize())
	}
	r := s.q.records
	return append(stmts,
		"CREATE TABLE IF NOT EXISTS "+r+` (
			gid        TEXT COLLATE "C" PRIMARY KEY,
			mode       TEXT NOT NULL,
			status     TEXT NOT NULL,
			finished   BOOLEAN NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			owner      TEXT NOT NULL DEFAULT '',
			version    BIGINT NOT NULL DEFAULT 0,
			data       BYTEA NOT NULL
		)`,
		"CREATE INDEX IF NOT EXISTS "+idx("records_created")+" ON "+r+" (created_at DESC, gid DESC)",
		"CREATE INDEX IF NOT EXISTS "+idx("records_status")+" ON "+r+" (status, created_at DESC, gid DESC)",
		"CREATE INDEX IF NOT EXISTS "+idx("records_mode")+" ON "+r+" (mode, created_at DESC, gid DESC)",
		"CREATE INDEX IF NOT EXISTS "+idx("records_unfinished")+" ON "+r+" (gid) WHERE NOT finished",
		"CREATE INDEX IF NOT EXISTS "+idx("records_finished")+" ON "+r+" (updated_at, gid) WHERE finished",
		"CREATE TABLE IF NOT EXISTS "+s.q.leases+` (
			instance   TEXT PRIMARY KEY,
			expires_at TIMESTAMPTZ NOT NULL
		)`,
		"CREATE TABLE IF NOT EXISTS "+s.q.meta+` (
			key     BYTEA PRIMARY KEY,
			version BIGINT NOT NULL,
			value   BYTEA NOT NULL
		)`,
		"CREATE TABLE IF NOT EXISTS "+s.q.schema+" (id INT PRIMARY KEY, version INT NOT NULL)",
		"INSERT INTO "+s.q.schema+fmt.Sprintf(" (id, version) VALUES (1, %d) ON CONFLICT (id) DO NOTHING", schemaVersion),
	)
}

// Migrate creates the schema if it is missing and checks its version. It is
// idempotent; when several processes run it at once, the losers of a race
// to create an object retry.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	var err error
	for attempt := range migrateAttempts {
		if err = s.migrateOnce(ctx); err == nil || !raceOnCreate(err) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	if err != nil {
		return s.fail("migrate", err)
	}
	var v int
	if err := s.pool.QueryRow(ctx, "SELECT version FROM "+s.q.schema+" WHERE id = 1").Scan(&v); err != nil {
		return s.fail("migrate", err)
	}
	if v != schemaVersion {
		return fmt.Errorf("pgstore: schema version %d in %s, this build needs %d", v, s.q.schema, schemaVersion)
	}
	return nil
}

// HasSchema reports whether the schema table exists with its row.
func (s *Store) HasSchema(ctx context.Context) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	var v int
	err := s.pool.QueryRow(ctx, "SELECT version FROM "+s.q.schema+" WHERE id = 1").Scan(&v)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000"):
		return false, nil
	}
	return false, s.fail("schema", err)
}

func (s *Store) migrateOnce(ctx context.Context) error {
	for _, stmt := range s.ddl() {
		if _, err := s.pool.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// raceOnCreate reports whether err is what PostgreSQL returns when two
// sessions run CREATE .. IF NOT EXISTS for one object at once.
func raceOnCreate(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "23505", "42P07", "42710", "40001", "40P01": // unique, duplicate table/object, serialization, deadlock
		return true
	}
	return false
}

// Drop deletes the store's tables and everything in them. Tests use it to
// clean up; it leaves Options.Schema in place.
func (s *Store) Drop(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, "DROP TABLE IF EXISTS "+s.q.records+", "+s.q.leases+", "+s.q.meta+", "+s.q.schema)
	if err != nil {
		return s.fail("drop", err)
	}
	return nil
}
