//go:build !linux

package rawio

import (
	"net"
	"syscall"
)

func newStream(c net.Conn, _ syscall.Conn, _ string) net.Conn { return c }
