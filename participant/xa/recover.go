package xa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Prepared is a prepared branch, as Recover lists it.
type Prepared struct {
	XID      string
	GID      string // "" when the XID is hashed and NameTable has no row for it
	BranchID string
	// PreparedAt is when the branch prepared (PostgreSQL); MySQL does not
	// say, so it is the zero time there.
	PreparedAt time.Time
}

// Recover lists the prepared branches that this package created and that
// no Commit or Abort has ended yet: the input of an orphan scan, which asks
// the coordinator for each branch's decision and then calls Commit or
// Abort.
//
// On PostgreSQL it lists the current database's prepared transactions. On
// MySQL, XIDs are server-wide: XA RECOVER lists the prepared branches of
// every database of the server (which the session may see: MySQL 8.0
// requires XA_RECOVER_ADMIN for other users' XIDs). Committing or aborting
// one from any database ends it in its own.
//
// A branch whose session prepared it moments ago may already be listed
// while that session is still attached to it (MySQL), and a listed branch
// may be ended by a concurrent Commit or Abort before the caller acts:
// Commit and Abort handle both.
func Recover(ctx context.Context, db *sql.DB, d Dialect) ([]Prepared, error) {
	if err := checkArgs(db, d); err != nil {
		return nil, err
	}
	var list []Prepared
	if d == Postgres {
		rows, err := db.QueryContext(ctx, `SELECT gid, prepared FROM pg_prepared_xacts
			WHERE database = current_database() AND left(gid, 3) IN ($1, $2) ORDER BY prepared, gid`,
			plainPrefix, hashedPrefix)
		if err != nil {
			return nil, fmt.Errorf("xa: recover: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var p Prepared
			if err := rows.Scan(&p.XID, &p.PreparedAt); err != nil {
				return nil, fmt.Errorf("xa: recover: %w", err)
			}
			if ours(p.XID) {
				list = append(list, p)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("xa: recover: %w", err)
		}
	} else {
		xids, err := xaRecover(ctx, db)
		if err != nil {
			return nil, fmt.Errorf("xa: recover: %w", err)
		}
		for _, x := range xids {
			list = append(list, Prepared{XID: x})
		}
	}
	for i := range list {
		p := &list[i]
		if gid, branch, ok := ParseXID(p.XID); ok {
			p.GID, p.BranchID = gid, branch
			continue
		}
		err := db.QueryRowContext(ctx, d.nameSQL(), p.XID).Scan(&p.GID, &p.BranchID)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("xa: recover: name of %s: %w", p.XID, err)
		}
	}
	return list, nil
}

// xaRecover returns the XIDs of this package that MySQL's XA RECOVER
// lists: formatID 1, an empty bqual, and a gtrid of the package's shape.
func xaRecover(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "XA RECOVER")
	if err != nil {
		return nil, fmt.Errorf("XA RECOVER: %w", err)
	}
	defer rows.Close()
	var xids []string
	for rows.Next() {
		var formatID, gtridLen, bqualLen int64
		var data []byte
		if err := rows.Scan(&formatID, &gtridLen, &bqualLen, &data); err != nil {
			return nil, fmt.Errorf("XA RECOVER: %w", err)
		}
		if formatID == 1 && bqualLen == 0 && gtridLen == int64(len(data)) && ours(string(data)) {
			xids = append(xids, string(data))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("XA RECOVER: %w", err)
	}
	return xids, nil
}
