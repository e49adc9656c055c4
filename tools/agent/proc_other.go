//go:build !linux

package agent

import "syscall"

// childAttr puts a server in its own process group, so that a Ctrl-C at
// the agent's terminal reaches the agent alone, which stops the servers in
// order.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
