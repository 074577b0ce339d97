// Package redisbarrier is the branch barrier of package participant for
// services whose state lives in Redis: the same three guarantees as
// participant.Barrier (idempotency, null compensation, no hanging), kept
// in Redis keys instead of a SQL table.
//
// # What is atomic
//
// Redis has no local transaction that spans other stores, so the barrier
// can make a business effect atomic with its bookkeeping only when that
// effect is itself Redis commands on the same server (or, on Redis Cluster,
// in the same hash slot). The API is built around that: the business
// function does not perform its writes, it queues them on a
// redis.Pipeliner, and Do sends them in one MULTI/EXEC together with the
// barrier keys, under WATCH of the barrier keys and of any business keys
// the function read. Either the barrier keys and all queued commands are
// applied, or none are (another client changed a watched key: Do starts
// over and decides again).
//
// Two limits of Redis itself remain. EXEC does not roll back: a queued
// command that fails when it runs (a WRONGTYPE, say) leaves the others,
// the barrier key included, applied, and Do returns that command's error;
// validate with reads before queueing. And an effect outside Redis (a SQL
// write, an HTTP call) made from the business function is not covered at
// all: for SQL use participant.Barrier in that database's transaction.
//
// # Which stores a barrier supports
//
// participant.Barrier: PostgreSQL, MySQL/MariaDB and SQLite (any
// database/sql driver), with the business writes in the same SQL
// transaction. redisbarrier.Barrier: Redis (standalone, Sentinel, or
// Cluster when the business keys share the barrier's hash tag, see Key),
// with the business writes queued in the same MULTI/EXEC. Neither covers
// message consumers' DoMessage/CheckBack on Redis: those need SQL.
//
// # Retention
//
// Barrier keys live forever unless WithTTL gives them an expiry. The
// caveat is the one of participant.Barrier.DeleteOlderThan: a key that
// expired no longer protects its branch, so the TTL must exceed the
// coordinator's transaction deadline plus its retry horizon (and any time
// a stuck transaction may wait for an operator).
package redisbarrier
