// Package pgstore is a store.Store on PostgreSQL, for several coordinator
// instances that share one database. It implements store.Deleter,
// store.Leaser, store.Meta and store.Migrator, and talks to the server
// through a pgxpool.Pool.
//
// # Schema
//
// Migrate creates four tables, named with Options.TablePrefix inside
// Options.Schema (the search_path's first schema when empty):
//
//	records(gid TEXT COLLATE "C" PRIMARY KEY, mode, status, finished,
//	        created_at BIGINT, updated_at BIGINT, owner, version BIGINT, data BYTEA)
//	leases(instance TEXT PRIMARY KEY, expires_at TIMESTAMPTZ)
//	meta(key BYTEA PRIMARY KEY, version BIGINT, value BYTEA)
//	schema(id INT PRIMARY KEY, version INT)
//
// with indexes for List (created_at DESC, gid DESC, and the same behind
// status and behind mode), a partial index of the unfinished gids (recovery
// and Claim) and a partial index of finished records by updated_at
// (DeleteFinished). gid sorts bytewise (COLLATE "C"), as List's order
// requires; a GID prefix is a range on the primary key.
//
// # Writes
//
// One Commit is one transaction sent as one pipelined pgx.Batch (BEGIN,
// one statement per record) plus COMMIT: an unconditional record is an
// INSERT .. ON CONFLICT (gid) DO UPDATE, Version 1 an INSERT .. ON CONFLICT
// DO NOTHING, Version > 1 an UPDATE .. WHERE version = Version-1. A versioned
// statement that touches no row is a conflict: the transaction is rolled
// back and Commit returns a *store.ConflictError naming every such record.
// Commit is durable when PostgreSQL's COMMIT returns (synchronous_commit on,
// the default).
//
// # Leases
//
// Heartbeat upserts expires_at = now() + ttl, so liveness is judged by the
// database's clock. Claim is one transaction of two statements: a
// SELECT .. FOR UPDATE SKIP LOCKED of candidates (unfinished, owner not the
// claimer and without an unexpired lease), then an UPDATE of those that
// still qualify under a new snapshot, which sets owner and bumps version.
// Concurrent claims skip each other's rows instead of waiting, and the
// second statement keeps a row just claimed by a live instance from being
// taken again (READ COMMITTED rechecks a locked row's own columns, not the
// leases it was joined with; the conformance suite caught that).
//
// # Portability
//
// The SQL avoids PostgreSQL-only features where a portable form exists, so
// that CockroachDB and YugabyteDB can run it: no advisory locks, no
// sequences, no triggers, no text_pattern_ops (the prefix filter is a range),
// no row-value comparison, timestamps as BIGINT nanoseconds. It does use
// INSERT .. ON CONFLICT, UPDATE .. RETURNING, FOR UPDATE SKIP LOCKED,
// gid = ANY($array), partial indexes, COLLATE "C", CREATE .. IF NOT EXISTS
// and "bigint * interval", which both of them document; it has been tested
// on PostgreSQL 15 only.
package pgstore
