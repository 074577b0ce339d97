package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version runs `concord version`: the module version, the commit it was
// built from (with "+dirty" when the tree had changes) and the Go release.
func Version(args []string, env Env) error {
	fs := newFlags("version", env)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("version: unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintln(env.Stdout, VersionString())
	return nil
}

// VersionString describes this build in one line.
func VersionString() string {
	version, commit, when := "(devel)", "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty {
			commit += "+dirty"
		}
	}
	out := fmt.Sprintf("concord %s commit %s", version, commit)
	if when != "" {
		out += " (" + when + ")"
	}
	return out + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}
