// Package mysqlstore is a store.Store on MySQL 8 or MariaDB 10.6+ (InnoDB),
// for several coordinator instances that share one database. It implements
// store.Deleter, store.Leaser, store.Meta and store.Migrator through
// database/sql and go-sql-driver/mysql.
//
// # Schema
//
// Migrate creates, with Options.TablePrefix:
//
//	records(gid VARBINARY(512) PRIMARY KEY, mode, status VARBINARY(255),
//	        finished BOOLEAN, created_at, updated_at BIGINT,
//	        owner VARBINARY(255), version BIGINT, data LONGBLOB)
//	leases(instance VARBINARY(255) PRIMARY KEY, expires_at DATETIME(6))
//	meta(mkey VARBINARY(512) PRIMARY KEY, version BIGINT, value MEDIUMBLOB)
//	schema(id INT PRIMARY KEY, version INT)
//
// Strings are VARBINARY so that they compare bytewise (List's order) with no
// collation and no PAD SPACE surprises; a GID prefix is a range on the
// primary key. Secondary indexes: (created_at, gid), (status, created_at,
// gid), (mode, created_at, gid), (finished, gid) for recovery and Claim,
// (finished, updated_at, gid) for DeleteFinished (MySQL has no partial
// indexes).
//
// # Writes
//
// One Commit is one transaction. When the batch has versioned records, a
// SELECT .. FOR UPDATE of their gids checks every expected version first;
// any mismatch rolls back and returns a *store.ConflictError naming them
// all. Records are then written with multi-row statements: INSERT for
// Version 1 (a duplicate key, which only a concurrent insert can cause, is a
// conflict too) and INSERT .. ON DUPLICATE KEY UPDATE for the others. The
// connection interpolates parameters client-side, so a statement is one
// round trip; a batch of unversioned records costs BEGIN, one INSERT per
// ~4 MiB, COMMIT. Durability is InnoDB's: innodb_flush_log_at_trx_commit=1
// (the default) makes COMMIT durable.
//
// # Leases
//
// Heartbeat upserts expires_at = UTC_TIMESTAMP(6) + ttl: the database's
// clock, independent of the session time zone. Claim runs in one READ
// COMMITTED transaction: it reads the live instances, locks candidate rows
// with SELECT .. FOR UPDATE SKIP LOCKED, reads the live instances again and
// updates only the locked rows whose current owner is still not live. The
// lease reads are plain statements: a locking read would lock lease rows,
// and SKIP LOCKED would then skip a live lease and take its records.
//
// # Portability
//
// Meant to run on TiDB as well (untested): no stored procedures, triggers,
// user variables, GET_LOCK, or FOR UPDATE OF; it uses INSERT .. ON
// DUPLICATE KEY UPDATE with VALUES(), DELETE .. ORDER BY .. LIMIT, SKIP
// LOCKED (TiDB: pessimistic transactions only) and UTC_TIMESTAMP(6).
package mysqlstore
