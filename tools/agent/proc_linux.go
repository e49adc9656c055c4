package agent

import "syscall"

// childAttr puts a server in its own process group, so that a Ctrl-C at
// the agent's terminal reaches the agent alone (which stops the servers in
// order), and has the kernel send it SIGTERM when the agent dies, so that
// no server outlives the agent that proxies to it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
