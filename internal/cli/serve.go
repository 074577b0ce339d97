package cli

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/server"
)

// Serve runs `concord serve`.
func Serve(args []string, env Env) error {
	fs := newFlags("serve", env)
	cfg, err := config.Load(fs, args, env.Getenv)
	if err != nil {
		return usageError("serve: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, cfg, cfg.Logger(), nil)
}
