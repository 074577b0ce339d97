package cli

import (
	"context"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/concordtm/concord/internal/demo"
)

// Demo runs `concord demo`: the shop example, end to end, in one process on
// the embedded store.
func Demo(args []string, env Env) error {
	fs := newFlags("demo", env)
	mode := fs.String("mode", demo.ModeAll, "protocol to show: saga, tcc, 2pc, msg (reliable messages) or all (\"both\" is an old name of all)")
	dataDir := fs.String("data-dir", "", "keep the coordinator's store and the shop's databases here (default: a temporary directory, removed afterwards)")
	verbose := fs.Bool("v", false, "print the coordinator's log on stderr")
	pgDSN := fs.String("postgres-dsn", "", "with -mysql-dsn and -mode 2pc or all: run the 2PC order service on this PostgreSQL database (pgx DSN), through participant/xa")
	myDSN := fs.String("mysql-dsn", "", "with -postgres-dsn and -mode 2pc or all: run the 2PC inventory service on this MySQL/MariaDB database (go-sql-driver/mysql DSN), through participant/xa")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("demo: unexpected argument %q", fs.Arg(0))
	}
	switch *mode {
	case demo.ModeSaga, demo.ModeTCC, demo.ModeTwoPC, demo.ModeMsg, demo.ModeAll, demo.ModeBoth:
	default:
		return usageError("demo: -mode %q: want saga, tcc, 2pc, msg or all", *mode)
	}
	if *pgDSN != "" || *myDSN != "" {
		if *pgDSN == "" || *myDSN == "" {
			return usageError("demo: -postgres-dsn and -mysql-dsn go together")
		}
		if *mode != demo.ModeTwoPC && *mode != demo.ModeAll && *mode != demo.ModeBoth {
			return usageError("demo: -postgres-dsn and -mysql-dsn need -mode 2pc or all (they serve the 2PC scenarios), not %q", *mode)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	o := demo.Options{Mode: *mode, DataDir: *dataDir, Out: env.Stdout, PostgresDSN: *pgDSN, MySQLDSN: *myDSN}
	if *verbose {
		o.Log = slog.New(slog.NewTextHandler(env.Stderr, nil))
	}
	_, err := demo.Run(ctx, o)
	return err
}
