package listen

import (
	"encoding/binary"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortSupported tells whether several UDP sockets may share an address
// with SO_REUSEPORT, the kernel spreading datagrams over them.
const reusePortSupported = true

// setReusePort is a net.ListenConfig Control function that sets
// SO_REUSEPORT before bind.
func setReusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// setPktinfo makes the kernel report each datagram's destination address
// (IP_PKTINFO, IPV6_RECVPKTINFO), so that a socket bound to a wildcard
// address knows which address a query was sent to and can answer from it.
func setPktinfo(c syscall.RawConn, v6 bool) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// oobSize is large enough for the control messages setPktinfo enables.
var oobSize = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(unix.SizeofInet4Pktinfo)

// parseDst returns the destination address and interface of a datagram
// from its control messages, ok false when they hold none.
func parseDst(oob []byte) (dst netip.Addr, ifindex uint32, ok bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return netip.Addr{}, 0, false
		}
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
			return netip.AddrFrom4([4]byte(data[8:12])), binary.NativeEndian.Uint32(data[0:4]), true
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo { in6_addr addr; unsigned ifindex; }
			return netip.AddrFrom16([16]byte(data[0:16])).Unmap(), binary.NativeEndian.Uint32(data[16:20]), true
		}
		oob = rest
	}
	return netip.Addr{}, 0, false
}

// srcOOB returns the control message that makes a reply leave from src,
// the address the query was sent to. Only link-local addresses keep the
// interface; for the others the routing table picks it. It returns nil for
// addresses a reply must not come from (multicast, broadcast), leaving the
// choice to the kernel.
func srcOOB(src netip.Addr, ifindex uint32) []byte {
	switch {
	case !src.IsValid() || src.IsMulticast() || src.IsUnspecified() || src == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return nil
	case src.Is4():
		return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: src.As4()})
	}
	info := &unix.Inet6Pktinfo{Addr: src.As16()}
	if src.IsLinkLocalUnicast() {
		info.Ifindex = ifindex
	}
	return unix.PktInfo6(info)
}

// udpBatch is the number of datagrams a UDP socket reads with one
// recvmmsg, and writes with one sendmmsg, at most.
const udpBatch = 32
