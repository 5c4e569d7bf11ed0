//go:build !linux

package rawio

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func newBatcher(c *net.UDPConn, v6 bool) (Batcher, error) {
	if v6 {
		return ipv6.NewPacketConn(c), nil
	}
	return ipv4.NewPacketConn(c), nil
}
