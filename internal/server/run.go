package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/destination"
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/embedded"
	storeopen "github.com/concordtm/concord/internal/store/open"
)

// ErrStartup wraps every error that prevents the server from starting
// (bad configuration, unusable data directory, address in use).
var ErrStartup = errors.New("concord: cannot start")

// OpenStore opens the store cfg names: the shared store at cfg.Store
// (migrated first when cfg.Migrate), or the embedded store in cfg.DataDir.
// It also returns a description of it for logs (never a password).
func OpenStore(ctx context.Context, cfg config.Config) (store.Store, string, error) {
	if cfg.Store != "" {
		st, err := storeopen.OpenWith(ctx, cfg.Store, storeopen.Options{Migrate: cfg.Migrate})
		if err != nil {
			return nil, "", fmt.Errorf("open store: %w", err)
		}
		return st, cfg.RedactedStore(), nil
	}
	st, err := embedded.Open(cfg.DataDir, embedded.Options{Engine: cfg.Engine})
	if err != nil {
		return nil, "", fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
	}
	return st, "embedded:" + cfg.DataDir, nil
}

// Run serves the coordinator until ctx is cancelled. ready, if non-nil,
// receives the bound address once the server accepts connections.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(addr string)) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrStartup, err)
	}
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		// Loaded before listening, so that a missing or bad file fails
		// the start instead of every handshake.
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("%w: tls: %v", ErrStartup, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStartup, err)
	}
	defer ln.Close() // srv.Shutdown closes it too; this covers a failed start
	dest, err := destination.Parse(cfg.AllowDestinations)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStartup, err)
	}
	dest.SetSelf(ln.Addr())
	if !dest.Restricted() && !loopbackOnly(ln.Addr()) {
		log.Warn("listening beyond loopback without -allow-destinations: anyone who can submit a transaction can make "+
			"this coordinator call any URL (an internal service, a cloud metadata address); set -allow-destinations", "addr", ln.Addr().String())
	}
	if cfg.Token == "" && !loopbackOnly(ln.Addr()) {
		log.Warn("listening beyond loopback without -token: anyone who can reach "+ln.Addr().String()+
			" can submit, retry and abort transactions; set -token (and -tls-cert) or listen on 127.0.0.1", "addr", ln.Addr().String())
	}
	// Loaded before the store: a bad credentials file fails the start.
	creds, err := coordinator.LoadDestinations(cfg.DestinationsConfig)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStartup, err)
	}
	st, where, err := OpenStore(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStartup, err)
	}
	defer st.Close()

	var shared *coordinator.SharedConfig
	if cfg.IsShared() {
		shared = &coordinator.SharedConfig{Instance: cfg.Instance, LeaseTTL: cfg.LeaseTTL}
	}
	ops := newOps(ctx, log)
	defer ops.close()
	caller := ops.caller(creds)
	if sc, ok := caller.(*coordinator.SchemeCaller); ok {
		sc.GuardDials(dest) // names that resolve to this listener
	}
	coord := coordinator.New(coordinator.Config{
		Listener:  ops.listener(),
		Caller:    caller,
		Shared:    shared,
		Retention: cfg.Retention, RetentionInterval: cfg.RetentionInterval,
		InDoubtAlert: cfg.InDoubtAlert,
		Defaults: protocol.Options{
			Timeout: int64(cfg.Timeout), BranchTimeout: int64(cfg.BranchTimeout),
			MaxAttempts: cfg.MaxAttempts, MaxTotalAttempts: cfg.MaxTotalAttempts,
			RetryInitial: int64(cfg.RetryInitial), RetryMax: int64(cfg.RetryMax),
		},
		AlertWebhook: cfg.AlertWebhook,
		Destinations: dest,
		Logger:       log,
	}, st)
	if err := coord.Start(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrStartup, err)
	}
	defer coord.Close()
	ops.metrics.Watch(coord.Stats)

	svc := NewService(coord, Limits{
		MaxBranches: cfg.MaxBranches, MaxPayloadBytes: cfg.MaxPayloadBytes,
		MaxRequestBytes: cfg.MaxRequestBytes, MaxWait: cfg.MaxWait,
	}).WithAuditLog(log).WithDestinations(dest)
	var limiter *clientLimiter
	if cfg.RateLimit > 0 {
		limiter = newClientLimiter(float64(cfg.RateLimit), cfg.RateBurst)
	}
	srv := &http.Server{
		Handler:           rateLimited(limiter, bodyTimeout(cfg.BodyReadTimeout, jsonErrors(ops.handler(Handler(svc, cfg.Token), cfg.Token), int64(svc.limits.MaxRequestBytes)))),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(true) // gRPC without TLS (h2c)

	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	addr := ln.Addr().String()
	log.Info("concord serving", "addr", addr, "store", where, "instance", coord.Instance(), "tls", cfg.TLSCert != "", "auth", cfg.Token != "")
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
	svc.Drain()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		// Connections still open after the grace period (a client that
		// dialed and never sent a request stays "new" and is waited for)
		// are closed, so that nothing of the server outlives Run.
		srv.Close()
	}
	log.Info("concord stopped")
	return nil
}

// loopbackOnly reports whether addr accepts connections from this host
// only.
func loopbackOnly(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
