// Package cli implements the concord command's subcommands. cmd/concord
// only dispatches here.
package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// ErrUsage marks a command-line mistake; main exits with status 2.
var ErrUsage = errors.New("usage")

// ErrHelp means -h or -help was asked for and the usage was printed on
// stdout; main exits with status 0 and prints nothing more.
var ErrHelp = flag.ErrHelp

// usageError formats a usage problem.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Env is what a command may touch of the outside world.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// DefaultEnv is the process's own environment.
func DefaultEnv() Env { return Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv} }

// flagOut holds what a flag set printed while parsing until the outcome
// says where it goes: stdout for -h (asked for), stderr for a mistake.
type flagOut struct {
	bytes.Buffer
	env Env
}

var flagOuts sync.Map // *flag.FlagSet → *flagOut

func newFlags(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	out := &flagOut{env: env}
	fs.SetOutput(out)
	flagOuts.Store(fs, out)
	return fs
}

// parsed routes what fs printed while parsing and classifies err: nil, the
// help that was asked for (ErrHelp), or a usage error. Later output of fs
// (fs.PrintDefaults) goes to stderr.
func parsed(fs *flag.FlagSet, err error) error {
	if v, ok := flagOuts.LoadAndDelete(fs); ok {
		out := v.(*flagOut)
		w := out.env.Stderr
		if errors.Is(err, flag.ErrHelp) {
			w = out.env.Stdout
		}
		_, _ = out.WriteTo(w)
		fs.SetOutput(out.env.Stderr)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return ErrHelp
	}
	return usageError("%s: %v", fs.Name(), err)
}

// parse parses flags, turning flag errors into usage errors. Flags may
// come before or after positional arguments (`tx show GID -addr URL`); a
// lone "--" ends the flags.
func parse(fs *flag.FlagSet, args []string) error {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // let Parse report it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	args = append(append(flags, "--"), pos...)
	return parsed(fs, fs.Parse(args))
}
