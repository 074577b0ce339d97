package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"

	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/dashboard"
	"github.com/concordtm/concord/internal/metrics"
	"github.com/concordtm/concord/internal/tracing"
)

// ops is what an operator sees besides the API: Prometheus metrics,
// OpenTelemetry traces (when the OTEL_* variables ask for them) and the
// web dashboard.
type ops struct {
	metrics  *metrics.Metrics
	tracer   *tracing.Tracer // nil when tracing is off
	shutdown func(context.Context) error
}

// newOps sets up metrics and, if the environment asks for it, tracing.
func newOps(ctx context.Context, log *slog.Logger) *ops {
	o := &ops{metrics: metrics.New(), shutdown: func(context.Context) error { return nil }}
	tp, err := tracing.FromEnv(ctx, os.Getenv)
	switch {
	case err != nil:
		log.Warn("tracing is off", "err", err)
	case tp != nil:
		o.tracer = tracing.New(tp)
		o.shutdown = tp.Shutdown
		log.Info("tracing on", "protocol", tracing.Protocol(os.Getenv))
	}
	return o
}

// listener feeds the metrics and the tracer.
func (o *ops) listener() coordinator.Listener {
	if o.tracer == nil {
		return o.metrics.Listener()
	}
	return coordinator.MergeListeners(o.metrics.Listener(), o.tracer.Listener())
}

// caller is the branch caller: the default one, propagating the trace
// context to participants when tracing is on.
// dest adds per-destination credentials.
func (o *ops) caller(dest *coordinator.Destinations) coordinator.Caller {
	if o.tracer == nil {
		return coordinator.NewSchemeCaller().WithDestinations(dest)
	}
	return coordinator.NewDecoratedCaller(o.tracer.Decorate).WithDestinations(dest)
}

// handler serves /metrics (with the API's token) and the dashboard at
// /ui/ next to the API handler. With tracing on, API requests continue
// the trace of their traceparent header.
func (o *ops) handler(api http.Handler, token string) http.Handler {
	if o.tracer != nil {
		api = o.tracer.Extract(api)
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("GET /metrics", requireToken(token, o.metrics.Handler()))
	mux.Handle("GET /ui/", http.StripPrefix("/ui", dashboard.Handler()))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	return mux
}

// close flushes buffered spans.
func (o *ops) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o.shutdown(ctx)
}

// WithAuditLog makes the service log one line for every operator action
// (retry, abort): who asked (remote address), what, the gid, the outcome.
func (s *Service) WithAuditLog(log *slog.Logger) *Service {
	s.audit = log
	return s
}

// audited logs an operator action when an audit log is set.
func (s *Service) audited(peer connect.Peer, action, gid string, err error) {
	if s.audit == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = err.Error()
		var ce *connect.Error
		if errors.As(err, &ce) {
			outcome = ce.Code().String() + ": " + ce.Message()
		}
	}
	s.audit.Info("AUDIT operator "+action, "gid", gid, "remote", peer.Addr, "outcome", outcome)
}
