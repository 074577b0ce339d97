package mysqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/concordtm/concord/internal/store"
)

// Heartbeat makes instance live until the database's UTC_TIMESTAMP(6) plus
// ttl.
func (s *Store) Heartbeat(ctx context.Context, instance string, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, "INSERT INTO "+s.t.leases+" (instance, expires_at)"+
		" VALUES (?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND)"+
		" ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)", instance, ttl.Microseconds())
	if err != nil {
		return s.fail("heartbeat", err)
	}
	return nil
}

// Release deletes instance's lease.
func (s *Store) Release(ctx context.Context, instance string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, "DELETE FROM "+s.t.leases+" WHERE instance = ?", instance); err != nil {
		return s.fail("release", err)
	}
	return nil
}

// Claim takes up to limit unfinished records of owners without a live
// lease; see the package documentation for the steps.
func (s *Store) Claim(ctx context.Context, instance string, limit int) ([]store.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, s.fail("claim", err)
	}
	out, err := s.claim(ctx, tx, instance, limit)
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		_ = tx.Rollback()
		return nil, s.fail("claim", err)
	}
	return out, nil
}

func (s *Store) claim(ctx context.Context, tx *sql.Tx, instance string, limit int) ([]store.Record, error) {
	live, err := s.liveInstances(ctx, tx, instance)
	if err != nil {
		return nil, err
	}
	args := append(live, limit)
	rows, err := tx.QueryContext(ctx, "SELECT gid, owner FROM "+s.t.records+
		" WHERE finished = FALSE AND owner NOT IN ("+placeholders(len(live))+")"+
		" ORDER BY gid LIMIT ? FOR UPDATE SKIP LOCKED", args...)
	if err != nil {
		return nil, err
	}
	type candidate struct{ gid, owner string }
	var cands []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.gid, &c.owner); err != nil {
			rows.Close()
			return nil, err
		}
		cands = append(cands, c)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil || len(cands) == 0 {
		return nil, err
	}
	// An instance that claimed one of these rows just before we locked it
	// had heartbeated before: it is in a fresh read of the leases.
	live, err = s.liveInstances(ctx, tx, instance)
	if err != nil {
		return nil, err
	}
	isLive := make(map[string]bool, len(live))
	for _, l := range live {
		isLive[l.(string)] = true
	}
	var gids []any
	for _, c := range cands {
		if !isLive[c.owner] {
			gids = append(gids, c.gid)
		}
	}
	if len(gids) == 0 {
		return nil, nil
	}
	in := " WHERE gid IN (" + placeholders(len(gids)) + ")"
	if _, err := tx.ExecContext(ctx, "UPDATE "+s.t.records+" SET owner = ?, version = version + 1"+in,
		append([]any{instance}, gids...)...); err != nil {
		return nil, err
	}
	return collect(tx.QueryContext(ctx, "SELECT "+columns+" FROM "+s.t.records+in+" ORDER BY gid", gids...))
}

// liveInstances reads the instances whose lease has not expired, plus
// self, with a plain (non-locking) read.
func (s *Store) liveInstances(ctx context.Context, tx *sql.Tx, self string) ([]any, error) {
	rows, err := tx.QueryContext(ctx, "SELECT instance FROM "+s.t.leases+" WHERE expires_at > UTC_TIMESTAMP(6)")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	live := []any{self}
	for rows.Next() {
		var inst string
		if err := rows.Scan(&inst); err != nil {
			return nil, err
		}
		if inst != self {
			live = append(live, inst)
		}
	}
	return live, rows.Err()
}
