package xa

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/concordtm/concord/participant"
)

// State answers a peer's state query (participant.OpState) about branch b,
// so that an XA branch can be asked by the other participants of the same
// transaction when they run a termination protocol (twophase.Resolver with
// Termination, twophase.ThreePCConfig.Termination). b.Mode tells the
// protocol ("2pc" or "3pc"). The answer is durable before State returns:
//
//   - participant.PeerCommitted: the branch committed (its marker row);
//   - participant.PeerVoted (2PC) or participant.PeerPreCommitted (3PC):
//     the branch is prepared (XA PREPARE, PREPARE TRANSACTION) and waits
//     for the decision;
//   - participant.PeerAborted: the branch holds nothing and never will.
//     In 3PC, a branch that has not pre-committed is aborted first,
//     exactly as Abort records it, so a later pre-commit of it is
//     refused: a branch that said "aborted" to a peer can never commit.
//     In 2PC only a branch whose abort is already recorded (Abort ran) is
//     answered so.
//
// A 2PC branch with no prepared transaction, no marker and no recorded
// abort gets no answer (an error): it may have voted read-only, a yes that
// leaves no trace here, and answering "aborted" would let the asker abort
// while the coordinator commits. 3PC has no read-only vote.
//
// While another session is preparing b, State waits for it, as Abort
// does; if ctx ends first it returns an error wrapping ErrInProgress, and
// the asker learns nothing (which it must treat as no answer). State
// never rolls back a prepared branch: an answer is not a decision.
//
// XA branches answer; they do not ask. Their own decision timeout is
// ThreePCTimeouts, which decides alone: a prepared XA transaction has no
// place to keep the peers the coordinator named.
func State(ctx context.Context, db *sql.DB, d Dialect, b participant.Branch) (participant.PeerState, error) {
	if err := checkBranch(db, d, b); err != nil {
		return "", err
	}
	threePC := b.Mode == "3pc"
	waiting := participant.PeerVoted
	if threePC {
		waiting = participant.PeerPreCommitted
	}
	xid := XID(b.GID, b.BranchID)
	recorded := false
	for wait := newBackoff(); ; {
		prepared, err := isPrepared(ctx, db, d, xid)
		if err != nil {
			return "", fmt.Errorf("xa: state of %s: %w", describe(b), err)
		}
		if prepared {
			return waiting, nil
		}
		if threePC && !recorded {
			// Not pre-committed (now): from here on no pre-commit of b may
			// succeed, unless one already holds the branch, which the
			// probe below finds.
			if _, err := db.ExecContext(ctx, d.insertAbortSQL(), b.GID, b.BranchID); err != nil {
				return "", fmt.Errorf("xa: state of %s: record abort: %w", describe(b), err)
			}
			recorded = true
			continue // it may have prepared meanwhile
		}
		st, err := d.probe(ctx, db, b)
		if err != nil {
			return "", fmt.Errorf("xa: state of %s: %w", describe(b), err)
		}
		switch st {
		case branchCommitted:
			return participant.PeerCommitted, nil
		case branchIdle:
			if threePC {
				return participant.PeerAborted, nil
			}
			var aborts int
			if err := db.QueryRowContext(ctx, d.countSQL(AbortTable), b.GID, b.BranchID).Scan(&aborts); err != nil {
				return "", fmt.Errorf("xa: state of %s: abort check: %w", describe(b), err)
			}
			if aborts > 0 {
				return participant.PeerAborted, nil
			}
			return "", fmt.Errorf("xa: state of %s: nothing prepared, committed or aborted here; the branch may have voted read-only, so there is no answer", describe(b))
		}
		// A Prepare of b holds it: it will prepare (the next round says
		// so) or give up (then idle).
		if err := wait(ctx); err != nil {
			return "", fmt.Errorf("%w: state of %s: waiting for a concurrent prepare: %w", ErrInProgress, describe(b), err)
		}
	}
}
