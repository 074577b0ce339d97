// Package twopc holds the end-to-end tests of two-phase commit: the real
// coordinator binary (killed with SIGKILL at the decision's failpoints)
// and two participants in the test process, "order" on PostgreSQL and
// "inventory" on MariaDB, each serving package xa's Handler over its own
// tables. The tests check what the databases hold: rows, prepared
// transactions (xa.Recover) and row locks, never only what the
// coordinator reports.
//
// They need the PostgreSQL (max_prepared_transactions > 0) and MariaDB of
// package testenv, and skip without them unless CI=true.
package twopc
