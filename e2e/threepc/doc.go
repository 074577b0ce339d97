// Package threepc runs three-phase commit end to end with the real
// coordinator binary: participants built on participant/twophase (SQLite)
// and participant/xa (the real PostgreSQL and MariaDB), commit, a no vote,
// kill -9 of the coordinator around the commit decision with the
// participants' own timeouts deciding while it is down, and bad input.
package threepc
