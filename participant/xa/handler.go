package xa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/concordtm/concord/participant"
)

// WorkFunc is a branch's business logic: the ordinary SQL of the prepare
// phase, run on conn inside the branch. payload is the request body.
// Return an error wrapping participant.ErrRejected to vote no, or one
// wrapping participant.ErrReadOnly to vote read-only (the branch is rolled
// back and gets no phase 2: only for work that changed nothing).
type WorkFunc func(ctx context.Context, b participant.Branch, payload []byte, conn *sql.Conn) error

// Handler returns the single endpoint of a two-phase-commit participant
// whose resource is db. The coordinator calls it with Concord-Op set to
// prepare, commit or abort; Handler runs Prepare (with work), Commit or
// Abort and answers in the participant wire form (participant.WriteResult):
//
//   - 200: prepared (vote yes), committed, aborted; 200 with Concord-Vote:
//     read-only when work returned participant.ErrReadOnly;
//   - 409: prepare refused (vote no): work rejected, or the branch was
//     already aborted;
//   - 500: anything else, including ErrNotPrepared on commit: the outcome
//     is not what was asked, or not known, and the coordinator retries;
//   - 400: a request without the branch headers or with another operation.
//
// A peer's state query (Concord-Op: state, from a participant running a
// termination protocol) is answered by State: 200 with Concord-State.
//
// The same endpoint serves three-phase commit (client.NewThreePC):
// can-commit answers 200 without touching the database (the work and its
// vote happen at pre-commit), pre-commit is Prepare (XA PREPARE, PREPARE
// TRANSACTION; a refusal is 409), do-commit is Commit and abort is Abort.
// A 3PC branch has no read-only vote: work returning ErrReadOnly at
// pre-commit is answered 500. The participant's own timeouts are not in
// the handler: a branch that said it can commit holds nothing, so its vote
// timeout has nothing to release, and the decision timeout (a pre-committed
// branch commits when it hears nothing) is a Resolver; see ThreePCTimeouts.
func Handler(db *sql.DB, d Dialect, work WorkFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := branchFromRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch b.Op {
		case participant.OpState:
			st, err := State(r.Context(), db, d, b)
			if errors.Is(err, participant.ErrInvalidBranch) {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			participant.WriteState(w, st, err)
			return
		case participant.OpCanCommit:
			err = nil
		case participant.OpPrepare, participant.OpPreCommit:
			payload, rerr := io.ReadAll(io.LimitReader(r.Body, participant.MaxBody))
			if rerr != nil {
				http.Error(w, "reading body: "+rerr.Error(), http.StatusInternalServerError)
				return
			}
			err = Prepare(r.Context(), db, d, b, func(ctx context.Context, conn *sql.Conn) error {
				return work(ctx, b, payload, conn)
			})
			if b.Op == participant.OpPreCommit && errors.Is(err, participant.ErrReadOnly) {
				err = fmt.Errorf("xa: %s: 3pc has no read-only vote: %s", describe(b), err.Error())
			}
		case participant.OpCommit, participant.OpDoCommit:
			err = Commit(r.Context(), db, d, b)
		case participant.OpAbort:
			err = Abort(r.Context(), db, d, b)
		}
		if errors.Is(err, participant.ErrInvalidBranch) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if b.Op != participant.OpPrepare && b.Op != participant.OpPreCommit && errors.Is(err, participant.ErrRejected) {
			// Only a vote may be "no"; a phase-two failure is never final.
			err = fmt.Errorf("xa: %s failed: %s", b.Op, err.Error())
		}
		participant.WriteResult(w, err)
	})
}

// branchFromRequest reads the branch headers of a 2PC or 3PC call.
func branchFromRequest(r *http.Request) (participant.Branch, error) {
	b, err := participant.FromRequest(r)
	if err != nil {
		return b, err
	}
	switch b.Op {
	case participant.OpPrepare, participant.OpCommit, participant.OpAbort,
		participant.OpCanCommit, participant.OpPreCommit, participant.OpDoCommit,
		participant.OpState:
		return b, nil
	}
	return participant.Branch{}, fmt.Errorf("xa: operation %q is not prepare, commit, abort, can-commit, pre-commit, do-commit or state", b.Op)
}
