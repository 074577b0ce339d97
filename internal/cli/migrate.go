package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/concordtm/concord/internal/config"
	"github.com/concordtm/concord/internal/server"
	"github.com/concordtm/concord/internal/store"
)

// Migrate runs `concord migrate`: it creates or upgrades the schema of the
// shared store that -store names (idempotent; safe to run from several
// hosts at once). The store comes from -store, CONCORD_STORE or the serve
// config file named by -config (CONCORD_CONFIG), as for serve.
func Migrate(args []string, env Env) error {
	fs := newFlags("migrate", env)
	storeURL := fs.String("store", "", "the shared store's URL (postgres://, mysql://, redis://); default CONCORD_STORE or the config file's")
	file := fs.String("config", "", "serve's JSON config file, to take the store from; default CONCORD_CONFIG")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: concord migrate -store URL [flags]\n\nCreates the schema of a shared store, or checks that it is there and up to date.\nThe embedded store needs no migration.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("migrate: unexpected argument %q", fs.Arg(0))
	}
	// The store setting is resolved exactly as serve resolves it.
	var loadArgs []string
	if *file != "" {
		loadArgs = append(loadArgs, "-config", *file)
	}
	if *storeURL != "" {
		loadArgs = append(loadArgs, "-store", *storeURL)
	}
	lfs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	lfs.SetOutput(io.Discard)
	cfg, err := config.Load(lfs, loadArgs, env.Getenv)
	if err != nil {
		return usageError("migrate: %v", err)
	}
	if cfg.Store == "" {
		return usageError("migrate: -store (or CONCORD_STORE) must name a postgres://, mysql:// or redis:// store; the embedded store needs no migration")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cfg.Migrate = false
	st, where, err := server.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	m, ok := st.(store.Migrator)
	if !ok {
		fmt.Fprintf(env.Stdout, "store %s: has no schema to create\n", where)
		return nil
	}
	had, err := m.HasSchema(ctx)
	if err != nil {
		return err
	}
	if err := m.Migrate(ctx); err != nil {
		return err
	}
	if had {
		fmt.Fprintf(env.Stdout, "store %s: found the schema; it is up to date\n", where)
	} else {
		fmt.Fprintf(env.Stdout, "store %s: created the schema\n", where)
	}
	return nil
}
