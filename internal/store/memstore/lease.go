package memstore

import (
	"context"
	"slices"
	"time"

	"github.com/concordtm/concord/internal/store"
)

// Heartbeat makes instance live until the Store's clock passes now+ttl.
func (s *Store) Heartbeat(ctx context.Context, instance string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.leases[instance] = s.now().Add(ttl)
	return nil
}

// Release ends instance's liveness at once.
func (s *Store) Release(ctx context.Context, instance string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	delete(s.leases, instance)
	return nil
}

// Claim gives instance up to limit unfinished records whose owner is not
// live, in gid order, bumping each one's Version.
func (s *Store) Claim(ctx context.Context, instance string, limit int) ([]store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	if limit <= 0 {
		return nil, nil
	}
	now := s.now()
	var gids []string
	for gid := range s.live {
		owner := s.records[gid].Owner
		if owner == instance {
			continue
		}
		if end, ok := s.leases[owner]; ok && now.Before(end) {
			continue
		}
		gids = append(gids, gid)
	}
	slices.Sort(gids)
	gids = gids[:min(limit, len(gids))]
	out := make([]store.Record, 0, len(gids))
	for _, gid := range gids {
		r := s.records[gid]
		r.Owner = instance
		r.Version++
		s.records[gid] = r
		out = append(out, clone(r))
	}
	return out, nil
}
