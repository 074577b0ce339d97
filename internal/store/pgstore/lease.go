package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concordtm/concord/internal/store"
)

// Heartbeat makes instance live until the database's now() plus ttl.
func (s *Store) Heartbeat(ctx context.Context, instance string, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.q.heartbeat, instance, ttl.Microseconds()); err != nil {
		return s.fail("heartbeat", err)
	}
	return nil
}

// Release deletes instance's lease.
func (s *Store) Release(ctx context.Context, instance string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.q.release, instance); err != nil {
		return s.fail("release", err)
	}
	return nil
}

// Claim takes up to limit unfinished records of owners without a live
// lease: one transaction locks candidates with FOR UPDATE SKIP LOCKED, so
// concurrent claims pass each other by, then updates those that still
// qualify.
func (s *Store) Claim(ctx context.Context, instance string, limit int) ([]store.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, s.fail("claim", err)
	}
	// Rolling back after a commit is a no-op.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, s.q.lock, instance, limit)
	if err != nil {
		return nil, s.fail("claim", err)
	}
	gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.fail("claim", err)
	}
	if len(gids) == 0 {
		return nil, nil
	}
	rows, err = tx.Query(ctx, s.q.claim, instance, gids)
	if err != nil {
		return nil, s.fail("claim", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Record, error) { return scanRecord(row) })
	if err != nil {
		return nil, s.fail("claim", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, s.fail("claim", err)
	}
	return out, nil
}
