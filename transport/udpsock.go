package transport

import (
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// dialUDP opens a connected, non-blocking UDP socket to addr in addr's
// family, registered with the runtime's poller, so reads and writes park
// the goroutine and honour deadlines like a net.Conn.
//
// It is what net.DialUDP does minus two system calls per query (it skips
// SO_BROADCAST, getsockname and getpeername; os.NewFile adds one fcntl),
// which matter because every upstream query gets a fresh socket: the kernel's random source port is
// half of the defence against spoofed answers (RFC 5452 §9.2).
func dialUDP(addr netip.AddrPort) (*os.File, error) {
	a := addr.Addr().Unmap()
	var sa unix.Sockaddr
	domain := unix.AF_INET
	if a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
	} else {
		domain = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	// A non-blocking descriptor is added to the poller by os.NewFile.
	return os.NewFile(uintptr(fd), "udp"), nil
}
