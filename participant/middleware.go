package participant

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"net/http"
)

type branchKey struct{}
type txKey struct{}

// NewContext returns ctx carrying b (what Middleware and
// UnaryServerInterceptor do for each branch call).
func NewContext(ctx context.Context, b Branch) context.Context {
	return context.WithValue(ctx, branchKey{}, b)
}

// FromContext returns the branch a call serves, if it came from the
// coordinator through Middleware or UnaryServerInterceptor.
func FromContext(ctx context.Context) (Branch, bool) {
	b, ok := ctx.Value(branchKey{}).(Branch)
	return b, ok
}

// TxFromContext returns the local transaction a barrier opened for this
// call (with WithBarrier): the handler must do all its work through it,
// so that the work commits together with the barrier row.
func TxFromContext(ctx context.Context) (*sql.Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	return tx, ok
}

// A MiddlewareOption configures Middleware and UnaryServerInterceptor.
type MiddlewareOption func(*middlewareOptions)

type middlewareOptions struct {
	barrier  *Barrier
	required bool
}

// WithBarrier runs each branch call inside br.Do: the handler finds the
// local transaction with TxFromContext and does its work through it; a
// success answer commits it with the barrier row, any other answer rolls
// it back. A repeated operation or a null compensation is answered as
// done without calling the handler; a hanging action is refused as
// rejected.
func WithBarrier(br *Barrier) MiddlewareOption {
	return func(o *middlewareOptions) { o.barrier = br }
}

// RequireBranch refuses calls without the coordinator's branch headers
// (HTTP 400, gRPC INVALID_ARGUMENT) instead of passing them through
// untouched.
func RequireBranch() MiddlewareOption {
	return func(o *middlewareOptions) { o.required = true }
}

func newMiddlewareOptions(opts []MiddlewareOption) middlewareOptions {
	var o middlewareOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Middleware is net/http middleware for an existing service's handlers
// (net/http, chi, gin via gin.WrapH, echo via echo.WrapMiddleware): a
// request with the coordinator's headers (Concord-Gid, …) gets its Branch
// in the context (FromContext); others pass through untouched unless
// RequireBranch. The handler answers in the wire form (2xx success, 409
// a business no, anything else unknown), e.g. with WriteResult.
//
// With WithBarrier, the handler's answer is held until the barrier's
// transaction ends: a 2xx commits it (if the commit fails the client gets
// 500, and the coordinator retries), any other status rolls it back.
func Middleware(opts ...MiddlewareOption) func(http.Handler) http.Handler {
	o := newMiddlewareOptions(opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(HeaderGID) == "" && !o.required {
				next.ServeHTTP(w, r)
				return
			}
			b, err := FromRequest(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			ctx := NewContext(r.Context(), b)
			if o.barrier == nil {
				next.ServeHTTP(w, r.WithContext(ctx))
				return
			}
			var rec *recorder
			err = o.barrier.Do(ctx, b, func(ctx context.Context, tx *sql.Tx) error {
				rec = &recorder{header: http.Header{}}
				next.ServeHTTP(rec, r.WithContext(context.WithValue(ctx, txKey{}, tx)))
				if rec.status() < 200 || rec.status() > 299 {
					return errHandlerRefused
				}
				return nil
			})
			switch {
			case err == nil && rec == nil:
				WriteResult(w, nil) // done before, or a null compensation
			case err == nil || errors.Is(err, errHandlerRefused):
				rec.replay(w)
			case errors.Is(err, ErrInvalidBranch):
				http.Error(w, err.Error(), http.StatusBadRequest)
			default:
				WriteResult(w, err) // rejected (hanging) or unknown
			}
		})
	}
}

// errHandlerRefused rolls the barrier back after a handler's non-2xx answer.
var errHandlerRefused = errors.New("participant: handler answered non-2xx")

// recorder holds a handler's answer until the barrier's transaction ends.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(p)
}
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
func (r *recorder) replay(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	w.WriteHeader(r.status())
	w.Write(r.body.Bytes())
}
