// Command concord is the Concord distributed transaction manager: the
// coordinator server, operator commands, a demo and a benchmark.
//
//	concord serve [flags]            run the coordinator
//	concord tx list|show|retry|abort operate on transactions
//	concord sub add|rm|list          manage message topic subscriptions
//	concord migrate -store URL       set up a shared store's schema
//	concord demo                     the shop example, end to end
//	concord bench [flags]            measure throughput and latency
//	concord explore [flags]          model-check a commit protocol under faults
//	concord version                  the build: module version, commit, Go release
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/concordtm/concord/internal/cli"
)

const usage = `usage: concord <command> [flags]

commands:
  serve    run the coordinator (concord serve -h for flags)
  tx       list, show, retry or abort transactions
  sub      add, remove or list the subscribers of message topics
  migrate  create or upgrade the schema of a shared store (-store URL)
  demo     run the shop example end to end on the embedded store
  bench    measure sagas/s and latency against a real coordinator
  explore  model-check 2pc, 3pc, saga or tcc under crashes, partitions, lost messages,
           slow participants
  version  print the build: module version, commit and Go release

concord <command> -h lists a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], cli.DefaultEnv()))
}

func run(args []string, env cli.Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cli.Serve(args[1:], env)
	case "tx":
		err = cli.Tx(args[1:], env)
	case "sub":
		err = cli.Sub(args[1:], env)
	case "migrate":
		err = cli.Migrate(args[1:], env)
	case "demo":
		err = cli.Demo(args[1:], env)
	case "bench":
		err = cli.Bench(args[1:], env)
	case "explore":
		err = cli.Explore(args[1:], env)
	case "version", "-version", "--version":
		err = cli.Version(args[1:], env)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(env.Stdout, usage)
		return 0
	default:
		fmt.Fprintf(env.Stderr, "concord: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, cli.ErrHelp):
		return 0
	}
	fmt.Fprintf(env.Stderr, "concord %s: %v\n", args[0], err)
	if errors.Is(err, cli.ErrUsage) {
		return 2
	}
	return 1
}
