package server

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/concordtm/concord/gen/concord/v1/concordv1connect"
)

func msDuration(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// Handler returns the HTTP handler serving the API (gRPC, gRPC-Web and
// Connect/JSON on the same paths), the health endpoints (see health.go)
// and gRPC reflection. With a non-empty token,
// every API call must carry "Authorization: Bearer <token>".
func Handler(svc *Service, token string) http.Handler {
	mux := http.NewServeMux()
	path, h := concordv1connect.NewCoordinatorServiceHandler(svc,
		connect.WithCodec(strictJSON{}),
		connect.WithReadMaxBytes(svc.limits.MaxRequestBytes),
		// Responses are a few hundred bytes: compressing them cost 12-19%
		// of the coordinator's CPU in the saga benchmark and saved nothing
		// on loopback or a LAN. Large ones (long lists) still compress.
		connect.WithCompressMinBytes(4096),
	)
	mux.Handle(path, requireToken(token, h))
	svc.health.register(mux, token)
	return mux
}

func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			msg := "missing or wrong bearer token"
			if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				w.Header().Set("Content-Type", "application/grpc")
				w.Header().Set("Grpc-Status", "16")
				w.Header().Set("Grpc-Message", msg)
				w.WriteHeader(http.StatusOK)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"code":"unauthenticated","message":"` + msg + `"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}
