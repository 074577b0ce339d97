// Package outbox is the transactional outbox: a producer writes its
// business rows and the messages they cause in one local transaction, and
// a Relay later hands the committed messages to a Sink (a broker publisher,
// or the coordinator) at least once, in order per key.
//
// # Writing
//
//	ob, _ := outbox.New(participant.Postgres)
//	_ = ob.Migrate(ctx, db)                   // once, or use ob's DDL in your migrations
//	tx, _ := db.BeginTx(ctx, nil)
//	// ... business writes through tx ...
//	id, _ := ob.Write(ctx, tx, outbox.Message{Key: "order-42", Payload: body})
//	_ = tx.Commit()                           // the message exists iff the business rows do
//
// # Relaying
//
//	pub, _ := broker.Open(ctx, dest)
//	relay := ob.NewRelay(db, outbox.PublisherSink(pub), outbox.RelayConfig{})
//	go relay.Run(ctx)
//
// or through the Concord coordinator, which then delivers each row to its
// destinations with retries (CoordinatorSink):
//
//	sink, _ := outbox.CoordinatorSink(client.New(coordURL), outbox.CoordinatorConfig{
//		Namespace: "orders", Destinations: []string{"http://billing/events"}})
//	relay := ob.NewRelay(db, sink, outbox.RelayConfig{})
//
// The coordinator sink sends each row under a gid derived from its message
// ID (MessageGID), so a row sent again after a relay crash is the message
// the coordinator already has, not a new one.
//
// # Guarantees
//
//   - Atomic: a message written in a transaction that rolls back is never
//     relayed; one that commits is relayed.
//   - At least once: a row is deleted (the durable mark of progress) only in
//     a transaction that commits after the sink confirmed it. A relay that
//     crashes between the two sends the row again: give consumers the
//     message ID (participant.Inbox drops the duplicates).
//   - Ordered per key: rows of one key are sent in sequence order, and a row
//     the sink refused blocks the later rows of its key, not of other keys,
//     until it succeeds. Rows with an empty key are independent of each
//     other. The order is the order of the sequence numbers, which is the
//     commit order for transactions that serialize on the key (for example
//     by locking the aggregate's row before writing the message); write the
//     message after taking that lock.
//     With CoordinatorSink this is the order in which the coordinator
//     accepts the messages; it delivers them independently, so consumers
//     see each key in order only with CoordinatorConfig.WaitDelivered.
//   - Permanent failures park the row: status 'failed', attempts, and the
//     sink's error in last_error. A parked row keeps blocking its key until
//     an operator fixes the cause and calls Requeue (or deletes the row).
//
// # Sequence gaps
//
// Sequence numbers are allocated when a row is inserted, not when its
// transaction commits, so a row with a higher number can commit before one
// with a lower number. The relay does not track a high-water mark: each row
// carries its own status and is deleted individually once delivered, so a
// late-committing lower row is simply found by the next poll. (A
// high-water-mark relay would skip it forever.)
//
// # Several relays
//
// On PostgreSQL and MySQL/MariaDB, relays take turns: each batch runs in a
// transaction that first locks the single row of the table's lease table
// (<table>_relay) with SELECT ... FOR UPDATE, reads the pending rows, sends
// them, and deletes them before committing. A second relay waits on the
// lock, so two relays never send the same key's rows concurrently; if a
// relay's connection dies, the database releases the lock and rolls its
// deletions back. (SKIP LOCKED on the rows alone would not do: a second
// relay would skip a locked row and send the next row of the same key.)
// Even in the window where a dying relay still sends while its successor
// starts, both send each key's rows in order and each waits for a
// confirmation before the next, so the first delivery of every message
// still arrives in order.
//
// SQLite has one writer and no row locks: run a single relay per database.
// Its batches read outside a transaction and delete in a short one, so that
// producers are not blocked while the sink works.
package outbox
