//go:build unix && !linux

package testenv

import "syscall"

// pgProcAttr runs initdb and postgres as cred (nil: as this process).
func pgProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
