// Package embedded is Concord's default store: a store.Store and
// store.Deleter kept in a local directory, with no server to run.
//
// Two pure-Go engines sit behind the same Store: bbolt (a copy-on-write
// B+tree in one file) and Pebble (an LSM tree with a write-ahead log).
// DefaultEngine was chosen by measurement; docs/storage.md gives the key
// layout, the durability guarantees and the numbers.
//
// Every Commit is one engine write transaction, fsynced before Commit
// returns: a Commit that returned nil survives kill -9 and, as far as the
// disk honours fsync, power loss; a Commit interrupted by a crash is either
// entirely there after restart or not at all.
//
// Besides the records, the store keeps indexes so that List walks only the
// records it returns (plus those skipped by a GIDPrefix filter or by a
// second filter), Unfinished walks only unfinished records and
// DeleteFinished walks only the finished records it deletes.
package embedded
