package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store/embedded"
)

// ErrStartup wraps every error that prevents the server from starting
// (bad configuration, unusable data directory, address in use).
var ErrStartup = errors.New("concord: cannot start")

// Run serves the coordinator until ctx is cancelled. ready, if non-nil,
// receives the bound address once the server accepts connections.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(addr string)) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrStartup, err)
	}
	st, err := embedded.Open(cfg.DataDir, embedded.Options{Engine: cfg.Engine})
	if err != nil {
		return fmt.Errorf("%w: open store in %s: %v", ErrStartup, cfg.DataDir, err)
	}
	defer st.Close()

	coord := coordinator.New(coordinator.Config{
		Defaults: protocol.Options{
			Timeout: int64(cfg.Timeout), BranchTimeout: int64(cfg.BranchTimeout),
			MaxAttempts: cfg.MaxAttempts, MaxTotalAttempts: cfg.MaxTotalAttempts,
			RetryInitial: int64(cfg.RetryInitial), RetryMax: int64(cfg.RetryMax),
		},
		AlertWebhook: cfg.AlertWebhook,
		Logger:       log,
	}, st)
	if err := coord.Start(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrStartup, err)
	}
	defer coord.Close()

	svc := NewService(coord, Limits{
		MaxBranches: cfg.MaxBranches, MaxPayloadBytes: cfg.MaxPayloadBytes,
		MaxRequestBytes: cfg.MaxRequestBytes, MaxWait: cfg.MaxWait,
	})
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStartup, err)
	}
	srv := &http.Server{
		Handler:           Handler(svc, cfg.Token),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(true) // gRPC without TLS (h2c)

	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	addr := ln.Addr().String()
	log.Info("concord serving", "addr", addr, "data_dir", cfg.DataDir, "tls", cfg.TLSCert != "", "auth", cfg.Token != "")
	if ready != nil {
		ready(addr)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutCtx)
	log.Info("concord stopped")
	return nil
}
