package participant

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// MaxBody bounds the request body HandlerFunc reads (the coordinator's
// default payload limit is 64 KiB).
const MaxBody = 4 << 20

// HandlerFunc is the business logic of one branch operation. Return nil for
// success, an error wrapping ErrRejected for a business "no" (only forward
// operations may refuse), and any other error when the outcome is not
// known or the operation failed for a reason worth retrying.
type HandlerFunc func(ctx context.Context, b Branch, payload []byte) error

// Handler adapts fn to the coordinator's wire protocol: 200 for success,
// 409 Conflict for rejected, 500 for anything else (retried). A request
// without the coordinator's headers gets 400.
func Handler(fn HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := FromRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusInternalServerError)
			return
		}
		WriteResult(w, fn(r.Context(), b, body))
	})
}

// ErrReadOnly, returned by a 2PC prepare handler, votes yes with nothing
// to commit: the branch gets no phase 2.
var ErrReadOnly = errors.New("participant: read-only")

// WriteResult writes err in the wire form: nil → 200, ErrRejected → 409
// with the message, ErrReadOnly → 200 with Concord-Vote: read-only,
// anything else → 500 with the message.
func WriteResult(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrReadOnly):
		w.Header().Set(HeaderVote, "read-only")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "READ-ONLY\n")
	case err == nil:
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "SUCCESS\n")
	case errors.Is(err, ErrRejected):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// Reject returns an error wrapping ErrRejected with a business reason.
func Reject(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRejected, fmt.Sprintf(format, args...))
}
