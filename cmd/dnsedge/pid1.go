package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// initProcess runs when dnsedge serve is PID 1, the entrypoint of a
// container. PID 1 cannot hand its place to a new binary (the container
// ends with it), so it stays a thin parent: it starts the server as its
// child, forwards SIGINT, SIGTERM, SIGHUP and SIGUSR2 to the process that
// serves, reaps every process that ends (the old one of an upgrade too),
// and exits with the status of the serving process. The servers name the
// serving process over the sd_notify protocol (MAINPID=) on a socket of
// its own, as they would to systemd.
func initProcess() int {
	dir, err := os.MkdirTemp("", "dnsedge-init")
	if err != nil {
		fmt.Fprintf(os.Stderr, "dnsedge: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "dnsedge: notify socket: %v\n", err)
		return 1
	}
	defer nc.Close()
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "dnsedge: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGCHLD)
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "dnsedge: start the server: %v\n", err)
		return 1
	}
	var main atomic.Int64
	main.Store(int64(cmd.Process.Pid))
	go readNotify(nc, &main)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			syscall.Kill(int(main.Load()), sig.(syscall.Signal))
			continue
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				if errors.Is(err, syscall.ECHILD) {
					return 0
				}
				break
			}
			if int64(pid) == main.Load() {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
	}
	return 0
}

// readNotify takes MAINPID= from the sd_notify messages on nc.
func readNotify(nc *net.UnixConn, main *atomic.Int64) {
	buf := make([]byte, 4096)
	for {
		n, err := nc.Read(buf)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if v, ok := strings.CutPrefix(line, "MAINPID="); ok {
				if pid, err := strconv.Atoi(v); err == nil && pid > 1 {
					main.Store(int64(pid))
				}
			}
		}
	}
}
