package bench

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel kill the child if this process dies
// without stopping it (SIGKILL, a crash), so a child never outlives the run.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
