//go:build !linux

package bench

import "os/exec"

// setParentDeathSignal does nothing where the kernel offers no parent-death
// signal; stop still kills the child on every path of Run.
func setParentDeathSignal(*exec.Cmd) {}
