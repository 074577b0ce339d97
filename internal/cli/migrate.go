package cli

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/server"
)

// Migrate runs `concord migrate`: it creates or upgrades the schema of the
// shared store that -store names (idempotent; safe to run from several
// hosts at once). It takes the same flags, environment and file as serve.
func Migrate(args []string, env Env) error {
	fs := newFlags("migrate", env)
	cfg, err := config.Load(fs, args, env.Getenv)
	if err != nil {
		return usageError("migrate: %v", err)
	}
	if cfg.Store == "" {
		return usageError("migrate: -store (or CONCORD_STORE) must name a postgres://, mysql:// or redis:// store; the embedded store needs no migration")
	}
	if err := cfg.Validate(); err != nil {
		return usageError("migrate: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cfg.Migrate = true
	st, where, err := server.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(env.Stdout, "store %s: schema is up to date\n", where)
	return nil
}
