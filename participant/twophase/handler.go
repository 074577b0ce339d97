package twophase

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/concordtm/concord/participant"
)

// Resource is a participant's business logic for the three operations of a
// 2PC branch, as Handler calls them. The intent stored at prepare is the
// request's payload, so Apply and Undo get the payload prepare got. Every
// function works through tx only.
type Resource struct {
	// Check is phase one: validate, lock or reserve (see CheckFunc).
	Check func(ctx context.Context, tx *sql.Tx, b participant.Branch, payload []byte) error
	// Apply makes the prepared intent final.
	Apply func(ctx context.Context, tx *sql.Tx, b participant.Branch, intent []byte) error
	// Undo releases what Check reserved.
	Undo func(ctx context.Context, tx *sql.Tx, b participant.Branch, intent []byte) error
	// CanCommit is 3PC's first phase only (ThreePC): a cheap question,
	// asked without a transaction, that must take nothing. Return an error
	// wrapping participant.ErrRejected to say no; any other error is a
	// failure the coordinator retries. Nil: always yes. In 3PC, Check runs
	// at pre-commit, with the same payload.
	CanCommit func(ctx context.Context, b participant.Branch, payload []byte) error
}

// HandlerFunc returns the branch operation as a participant.HandlerFunc:
// prepare runs Prepare with r.Check and the payload as intent, commit runs
// Commit with r.Apply, abort runs Abort with r.Undo. Only a prepare may
// answer "rejected" (a vote no); a failed commit or abort is reported as a
// plain error, which the coordinator retries. Another operation gets an
// error wrapping participant.ErrInvalidBranch.
func (s *Store) HandlerFunc(r Resource) participant.HandlerFunc {
	return func(ctx context.Context, b participant.Branch, payload []byte) error {
		var err error
		switch b.Op {
		case participant.OpPrepare:
			return s.Prepare(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
				return r.Check(ctx, tx, b, payload)
			}, payload)
		case participant.OpCommit:
			err = s.Commit(ctx, b, func(ctx context.Context, tx *sql.Tx, intent []byte) error {
				return r.Apply(ctx, tx, b, intent)
			})
		case participant.OpAbort:
			err = s.Abort(ctx, b, func(ctx context.Context, tx *sql.Tx, intent []byte) error {
				return r.Undo(ctx, tx, b, intent)
			})
		default:
			return fmt.Errorf("%w: operation %q is not prepare, commit or abort", participant.ErrInvalidBranch, b.Op)
		}
		if errors.Is(err, participant.ErrRejected) {
			// Only a vote may be "no"; a phase-two failure is never final.
			err = fmt.Errorf("twophase: %s failed: %s", b.Op, err.Error())
		}
		return err
	}
}

// Handler serves a 2PC participant's single URL with r. The coordinator
// calls it with Concord-Op set to prepare, commit or abort; the answer is
// the participant wire form (participant.WriteResult):
//
//   - 200: prepared (vote yes), committed, aborted; 200 with Concord-Vote:
//     read-only when r.Check returned participant.ErrReadOnly;
//   - 409: prepare refused (vote no): r.Check rejected, or the branch was
//     already aborted;
//   - 500: anything else, including ErrNotPrepared on commit: the
//     coordinator retries;
//   - 400: a request without the branch headers or with another operation.
//
// A peer's state query (Concord-Op: state; the cooperative termination
// protocol) is answered by AnswerPeer: 200 with Concord-State.
func (s *Store) Handler(r Resource) http.Handler { return serve(s.HandlerFunc(r), s.AnswerPeer) }

// serve answers the coordinator's calls with fn, and peers' state queries
// with states, in the participant wire form; a request without branch
// headers, with a malformed Concord-Peers or with an operation fn does not
// serve is a 400.
func serve(fn participant.HandlerFunc, states participant.StateFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, err := participant.FromRequest(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if b.Op == participant.OpState {
			st, err := states(req.Context(), b)
			if errors.Is(err, participant.ErrInvalidBranch) {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			participant.WriteState(w, st, err)
			return
		}
		payload, err := io.ReadAll(io.LimitReader(req.Body, participant.MaxBody))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusInternalServerError)
			return
		}
		err = fn(req.Context(), b, payload)
		if errors.Is(err, participant.ErrInvalidBranch) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		participant.WriteResult(w, err)
	})
}
