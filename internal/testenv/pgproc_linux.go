package testenv

import "syscall"

// pgProcAttr runs initdb and postgres as cred (nil: as this process) and
// has the kernel send the server SIGQUIT (immediate shutdown) when this
// process dies without stopping it. (Go sets the parent-death signal after
// changing the credentials, which would otherwise clear it; Go's threads
// outlive the child unless a goroutine exits locked to one.)
func pgProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
}
