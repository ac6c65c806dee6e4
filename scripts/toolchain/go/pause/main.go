// Pause is the pod sandbox process: it holds the pod's namespaces open, sleeps until it is
// told to stop, and, as PID 1 of a shared PID namespace, reaps the orphans that land on it.
// It does what the upstream pause.c does, in Go so the bundle needs only the Go toolchain.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Printf("pause %s\n", version)
		return
	}
	if os.Getpid() != 1 {
		// Same warning as the upstream binary: it still works, but nothing is reaped for us.
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}

	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		switch sig {
		case syscall.SIGCHLD:
			reapChildren()
		default:
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", sig)
			os.Exit(0)
		}
	}
}

// reapChildren collects every exited child without blocking; SIGCHLD coalesces, so one
// signal may stand for many exits.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
