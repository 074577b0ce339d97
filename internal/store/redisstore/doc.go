// Package redisstore is a store.Store on Redis 7 (go-redis v9), for several
// coordinator instances that share one Redis. It implements store.Deleter,
// store.Leaser, store.Meta and store.Migrator.
//
// # Key layout
//
// Every key of a namespace starts with P = "{concord:<Namespace>}:". The
// braces are a Redis Cluster hash tag: all of a namespace's keys hash to one
// slot, so every Lua script touches a single slot and runs atomically on one
// node. The trade-off: one namespace cannot be spread over a cluster (its
// data and load sit on one primary); shard by running several namespaces.
// The scripts build most key names from P themselves (only P.."c" is passed
// in KEYS, to route them); Redis Cluster executes that within one slot, but
// it is outside the documented rule that scripts declare their keys.
//
//	P r:<gid>      hash: mode status fin c u owner ver data ck fk
//	P c            zset, all scores 0: member hex16(CreatedAt)<gid>, every record
//	P s:<status>   zset: same members, records with that status
//	P m:<mode>     zset: same members, records with that mode
//	P u            zset: member <gid>, unfinished records
//	P f            zset: member hex16(UpdatedAt)<gid>, finished records
//	P l:<instance> string with a PX expiry: the instance's lease
//	P schema       the key layout version
//	P k:<key>      hash: ver val, a store.Meta entry
//	P k            zset, all scores 0: member <key>, every store.Meta entry
//
// hex16 is the int64 with its sign bit flipped in 16 hex digits, so that
// ZRANGEBYLEX walks (time, gid) in order: List walks one index backwards
// from its cursor; scores are not used because a float64 cannot hold a
// nanosecond timestamp.
//
// # Writes and durability
//
// Commit is one EVALSHA: the script reads the stored version of every
// versioned record first and returns the conflicting gids, writing nothing,
// if any does not match; otherwise it writes every hash and moves its index
// entries. Redis does not roll a script back if a command fails half way;
// the script checks everything before its first write, so only the server
// failing (out of memory, say) could leave a partial batch.
//
// Redis is exactly as durable as its persistence settings: a Commit that
// returned nil survives kill -9 and power loss only with appendonly yes and
// appendfsync always (Redis fsyncs the AOF before it replies). With the
// default appendfsync everysec up to a second of commits can be lost, and
// without persistence (the test server) everything is lost on restart.
// Replication is asynchronous: a failover can lose acknowledged commits
// unless WAIT/WAITAOF is used, which this store does not do.
//
// # Leases
//
// Heartbeat is SET P l:<instance> PX ttl, so Redis's clock expires the
// lease; Release deletes it. Claim is one script that walks P u in gid order
// and takes up to limit records whose owner is not the claimer and has no
// lease key, bumping ver and setting owner. Scripts run one at a time, so
// two claims never take one record.
package redisstore
