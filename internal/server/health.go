package server

import (
	"context"
	"net/http"
	"sync/atomic"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/concordtm/concord/gen/concord/v1/concordv1connect"
)

// Health endpoints, for load balancers and orchestrators:
//
//	GET /livez    200 while the process serves HTTP (restart it if not)
//	GET /healthz  200 when the store answers, 503 naming the problem if not
//	GET /readyz   as /healthz, and 503 once the server is shutting down
//
// and the standard gRPC health service (grpc.health.v1.Health; "" and
// concord.v1.CoordinatorService are SERVING when /readyz would answer 200).

// health answers the probes for one service.
type health struct {
	svc      *Service
	draining atomic.Bool
}

// check probes the store; with ready, a draining server is not healthy.
func (h *health) check(ctx context.Context, ready bool) (status int, text string) {
	if ready && h.draining.Load() {
		return http.StatusServiceUnavailable, "shutting down\n"
	}
	if err := h.svc.coord.Health(ctx); err != nil {
		return http.StatusServiceUnavailable, err.Error() + "\n"
	}
	return http.StatusOK, "ok\n"
}

// Check implements grpchealth.Checker.
func (h *health) Check(ctx context.Context, r *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if r.Service != "" && r.Service != concordv1connect.CoordinatorServiceName {
		return nil, connect.NewError(connect.CodeNotFound, nil)
	}
	if code, _ := h.check(ctx, true); code != http.StatusOK {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

func (h *health) register(mux *http.ServeMux, token string) {
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	probe := func(ready bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			code, text := h.check(r.Context(), ready)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(code)
			w.Write([]byte(text))
		}
	}
	mux.HandleFunc("GET /healthz", probe(false))
	mux.HandleFunc("GET /readyz", probe(true))
	mux.Handle(grpchealth.NewHandler(h))
	// Reflection lets grpcurl and similar tools discover the API. It
	// describes the schema only; with a token it needs the token too.
	reflector := grpcreflect.NewStaticReflector(concordv1connect.CoordinatorServiceName)
	path, rh := grpcreflect.NewHandlerV1(reflector)
	mux.Handle(path, requireToken(token, rh))
	path, rh = grpcreflect.NewHandlerV1Alpha(reflector)
	mux.Handle(path, requireToken(token, rh))
}
