//go:build !linux

package listen

import (
	"net/netip"
	"syscall"
)

// Outside Linux a UDP listener has one socket, and a socket bound to a
// wildcard address answers from the address the kernel picks.
const reusePortSupported = false

func setReusePort(_, _ string, _ syscall.RawConn) error { return nil }

func setPktinfo(syscall.RawConn, bool) error { return nil }

var oobSize = 0

func parseDst([]byte) (netip.Addr, uint32, bool) { return netip.Addr{}, 0, false }

func srcOOB(netip.Addr, uint32) []byte { return nil }

// udpBatch is 1: one datagram per syscall.
const udpBatch = 1
