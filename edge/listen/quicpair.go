package listen

// The forwarding pair of a QUIC socket handed over in an upgrade: what the
// old process sends over it, how the pair is made and inherited.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// fwdOut is the sending end of a forwarding pair.
type fwdOut struct {
	r    *QUICRouting
	c    *net.UnixConn
	next byte
	all  atomic.Bool // forward every packet: this process's listener is closed
}

// send forwards the packet p from a, without waiting: a full queue drops
// it.
func (o *fwdOut) send(a net.Addr, p []byte) {
	buf, err := encodeForwarded(a, p)
	if err != nil {
		o.r.drop(err)
		return
	}
	rc, err := o.c.SyscallConn()
	if err != nil {
		o.r.drop(err)
		return
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Send(int(fd), buf, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		return true
	}); err != nil {
		serr = err
	}
	if serr != nil {
		o.r.drop(serr)
		return
	}
	o.r.forwarded.Inc()
	o.r.nForwarded.Add(1)
}

// encodeForwarded returns the datagram forwarding p from a: the length
// of a's binary form, that form (netip.AddrPort's), then p.
func encodeForwarded(a net.Addr, p []byte) ([]byte, error) {
	ap := addrPortOf(a)
	if !ap.IsValid() {
		return nil, fmt.Errorf("forward a packet from %v: not an IP address", a)
	}
	ab, _ := ap.MarshalBinary()
	buf := make([]byte, 0, 1+len(ab)+len(p))
	buf = append(buf, byte(len(ab)))
	buf = append(buf, ab...)
	return append(buf, p...), nil
}

// decodeForwarded splits a datagram made by encodeForwarded.
func decodeForwarded(d []byte) (*net.UDPAddr, []byte, error) {
	if len(d) == 0 || len(d) < 1+int(d[0]) {
		return nil, nil, errors.New("forwarded packet cut short")
	}
	var ap netip.AddrPort
	if err := ap.UnmarshalBinary(d[1 : 1+int(d[0])]); err != nil || !ap.IsValid() {
		return nil, nil, fmt.Errorf("forwarded packet: bad address: %v", err)
	}
	return net.UDPAddrFromAddrPort(ap), d[1+int(d[0]):], nil
}

// pair makes the forwarding pair of a handover of this socket and
// returns the new process's end (see IsQUICPair).
func (s *quicSock) pair(addr string) (Socket, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Socket{}, fmt.Errorf("quic forwarding pair for %s: %w", addr, err)
	}
	// Room for bursts of Initials; the kernel caps it at wmem_max.
	unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	mine, theirs := os.NewFile(uintptr(fds[0]), "quic forward"), os.NewFile(uintptr(fds[1]), "quic forward")
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		theirs.Close()
		return Socket{}, fmt.Errorf("quic forwarding pair for %s: %w", addr, err)
	}
	s.mu.Lock()
	if s.pending != nil {
		s.pending.Close() // an earlier handover that did not happen
	}
	s.pending = c.(*net.UnixConn)
	s.mu.Unlock()
	return Socket{Network: "unix", Addr: quicPairPrefix + addr, File: theirs}, nil
}

// stopForwarding closes the pair, pending or in use; a socket that
// forwarded all its packets (handOver) is closed.
func (s *quicSock) stopForwarding() {
	s.mu.Lock()
	if s.pending != nil {
		s.pending.Close()
		s.pending = nil
	}
	s.mu.Unlock()
	if o := s.out.Swap(nil); o != nil {
		o.c.Close()
		if o.all.Load() {
			s.c.SetReadDeadline(time.Now()) // wakes handOver's reader
		}
	}
}

// handOver is for a listener that closes while this process forwards:
// from then on every packet of the socket goes to the new process, until
// the forwarding stops, when the socket is closed. It returns false,
// doing nothing, when the socket does not forward; the caller closes it.
func (s *quicSock) handOver() bool {
	o := s.out.Load()
	if o == nil {
		return false
	}
	o.all.Store(true)
	s.SetReadDeadline(time.Time{})
	go func() {
		defer s.Close()
		b := make([]byte, 1<<16)
		for s.out.Load() != nil {
			if _, _, err := s.ReadFrom(b); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					return
				}
			}
		}
	}()
	return true
}

// quicPairPrefix starts the Addr of a QUIC socket's forwarding pair in
// the socket list: "unix quic:ADDR 0" goes with "udp4 ADDR 0". A process
// that does not know it leaves it unused.
const quicPairPrefix = "quic:"

// IsQUICPair reports whether s is the forwarding pair of a QUIC socket.
func IsQUICPair(s Socket) bool {
	return s.Network == "unix" && strings.HasPrefix(s.Addr, quicPairPrefix)
}

// inheritPair returns the forwarding pair handed over with the QUIC
// socket of addr, nil when there is none.
func (in *Inherited) inheritPair(addr string) (*net.UnixConn, error) {
	f := in.take("unix", quicPairPrefix+addr, 0)
	if f == nil {
		return nil, nil
	}
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("inherited quic forwarding pair %s: %w", addr, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("inherited quic forwarding pair %s: not a unix socket", addr)
	}
	return uc, nil
}
