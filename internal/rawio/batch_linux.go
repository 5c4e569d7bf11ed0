//go:build linux

package rawio

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// conn is a Batcher over a socket's syscall.RawConn. A read and a write
// may run at the same time; reads are serialized with each other, and so
// are writes, each side keeping its headers from one call to the next.
type conn struct {
	rc syscall.RawConn
	v6 bool

	rmu sync.Mutex
	r   sides
	rl  loop // readLoop's call in progress, under rmu

	wmu sync.Mutex
	w   sides
}

// loop is the state of one readLoop call, kept in the conn with its
// function bound once (newBatcher), so that a call allocates nothing: the
// UDP listener calls ReadLoop once per batch when it serves batches
// itself.
type loop struct {
	ms     []ipv4.Message
	flags  int
	want   int
	handle func(n int) int
	err    error
	fn     func(fd uintptr) bool
}

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2); Go pads it
// to the alignment of msghdr as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// sides holds the arrays one call of one side fills in, grown to the
// largest batch seen.
type sides struct {
	// The call in progress: the system call, its count of messages and
	// flags, and what it gave. fn, handed to the RawConn, is bound once
	// (newBatcher), so that a call allocates no closure and no result on
	// the heap.
	op, count, flags uintptr
	n                int
	errno            syscall.Errno
	fn               func(fd uintptr) bool

	hs    []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for a sockaddr_in too
	addrs []net.UDPAddr           // the read side's message addresses
	ips   [][16]byte              // their IPs
}

func (s *sides) grow(n, iovs int) {
	if len(s.hs) < n {
		s.hs = make([]mmsghdr, n)
		s.names = make([]unix.RawSockaddrInet6, n)
		s.addrs = make([]net.UDPAddr, n)
		s.ips = make([][16]byte, n)
	}
	if len(s.iovs) < iovs {
		s.iovs = make([]unix.Iovec, iovs)
	}
}

func newBatcher(c *net.UDPConn, v6 bool) (Batcher, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &conn{rc: rc, v6: v6}
	b.r.op, b.r.fn = unix.SYS_RECVMMSG, b.r.call
	b.w.op, b.w.fn = unix.SYS_SENDMMSG, b.w.call
	b.rl.fn = b.readSome
	return b, nil
}

// call runs the side's system call on fd, retried on EINTR; false (wait
// for readiness) on EAGAIN.
func (s *sides) call(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(s.op, fd, uintptr(unsafe.Pointer(&s.hs[0])), s.count, s.flags, 0, 0)
		s.n, s.errno = int(r), e
		if e != unix.EINTR {
			return e != unix.EAGAIN
		}
	}
}

// headers points s.hs[:len(ms)] at the buffers of ms.
func (s *sides) headers(ms []ipv4.Message) {
	niov := 0
	for i := range ms {
		niov += len(ms[i].Buffers)
	}
	s.grow(len(ms), niov)
	iovs := s.iovs[:0]
	for i := range ms {
		m := &ms[i]
		h := &s.hs[i]
		*h = mmsghdr{}
		first := len(iovs)
		for _, b := range m.Buffers {
			var iov unix.Iovec
			if len(b) > 0 {
				iov.Base = &b[0]
				iov.SetLen(len(b))
			}
			iovs = append(iovs, iov)
		}
		if len(iovs) > first {
			h.hdr.Iov = &iovs[first]
			h.hdr.SetIovlen(len(iovs) - first)
		}
		if len(m.OOB) > 0 {
			h.hdr.Control = &m.OOB[0]
			h.hdr.SetControllen(len(m.OOB))
		}
	}
}

// ReadBatch is recvmmsg(2). The Addr of a message read is the conn's and
// valid until the next ReadBatch: callers copy what they keep.
func (c *conn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	s := &c.r
	c.prepareRead(ms, flags)
	err := c.rc.Read(s.fn)
	n, errno := s.n, s.errno
	if err == nil && errno != 0 {
		err = os.NewSyscallError("recvmmsg", errno)
	}
	if err != nil {
		return 0, err
	}
	c.finishRead(ms, n)
	return n, nil
}

// readLoop is ReadLoop on Linux. It stays in one call of the RawConn's
// Read: after a lone datagram, when more were asked for, the socket's
// queue was empty when recvmmsg returned, so it waits for the poller to
// say a datagram came instead of asking once more and being told EAGAIN.
// The poller keeps the readiness of a datagram that arrives while a
// batch is handled, as long as the loop does not leave Read (a new Read
// resets it), so none waits for the next one. After a larger batch it
// asks again at once: under load the next datagrams are likely there
// already, and the poller, which a busy scheduler consults only when it
// runs out of goroutines, would only delay them.
func (c *conn) readLoop(ms []ipv4.Message, flags, first int, handle func(n int) int) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	l := &c.rl
	*l = loop{ms: ms, flags: flags, want: min(first, len(ms)), handle: handle, fn: l.fn}
	err := c.rc.Read(l.fn)
	serr := l.err
	*l = loop{fn: l.fn}
	if err != nil {
		return err
	}
	return serr
}

// readSome is readLoop's function for the RawConn's Read, on c.rl.
func (c *conn) readSome(fd uintptr) bool {
	l, s := &c.rl, &c.r
	for l.want > 0 {
		c.prepareRead(l.ms[:l.want], l.flags)
		if !s.call(fd) {
			return false // EAGAIN: wait for a datagram
		}
		if s.errno != 0 {
			l.err = os.NewSyscallError("recvmmsg", s.errno)
			return true
		}
		n, asked := s.n, l.want
		c.finishRead(l.ms, n)
		l.want = min(l.handle(n), len(l.ms))
		if n == 1 && asked > 1 && l.want > 0 {
			return false
		}
	}
	return true
}

// prepareRead points the read side's headers at ms.
func (c *conn) prepareRead(ms []ipv4.Message, flags int) {
	s := &c.r
	s.headers(ms)
	for i := range ms {
		h := &s.hs[i].hdr
		s.names[i] = unix.RawSockaddrInet6{}
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
	}
	s.count, s.flags = uintptr(len(ms)), uintptr(flags)
}

// finishRead fills in the first n messages of ms from what recvmmsg gave.
func (c *conn) finishRead(ms []ipv4.Message, n int) {
	s := &c.r
	for i := range n {
		m, h := &ms[i], &s.hs[i]
		m.N = int(h.n)
		m.NN = int(h.hdr.Controllen)
		m.Flags = int(h.hdr.Flags)
		m.Addr = s.addr(i)
	}
}

// addr returns the address of the i-th datagram read, in the read side's
// arrays; nil when the kernel gave none of the families.
func (s *sides) addr(i int) *net.UDPAddr {
	sa := &s.names[i]
	a := &s.addrs[i]
	ip := s.ips[i][:]
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*a = net.UDPAddr{IP: ip[:copy(ip, sa4.Addr[:])], Port: port(sa4.Port)}
	case unix.AF_INET6:
		*a = net.UDPAddr{IP: ip[:copy(ip, sa.Addr[:])], Port: port(sa.Port)}
		if sa.Scope_id != 0 {
			a.Zone = strconv.FormatUint(uint64(sa.Scope_id), 10)
		}
	default:
		return nil
	}
	return a
}

// port converts a port in network byte order, as it lies in memory.
func port(p uint16) int {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return int(b[0])<<8 | int(b[1])
}

// htons returns the port p laid out in network byte order.
func htons(p int) uint16 {
	var v uint16
	b := (*[2]byte)(unsafe.Pointer(&v))
	b[0], b[1] = byte(p>>8), byte(p)
	return v
}

// errAddr says a message to write has no address this socket can send
// to.
var errAddr = errors.New("no udp address of the socket's family")

// WriteBatch is sendmmsg(2).
func (c *conn) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s := &c.w
	s.headers(ms)
	for i := range ms {
		nl, err := c.sockaddr(ms[i].Addr, &s.names[i])
		if err != nil {
			if i == 0 {
				return 0, fmt.Errorf("write to %v: %w", ms[i].Addr, err)
			}
			ms = ms[:i] // the ones before it go; the caller retries from it
			break
		}
		h := &s.hs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Namelen = nl
	}
	s.count, s.flags = uintptr(len(ms)), uintptr(flags)
	err := c.rc.Write(s.fn)
	n, errno := s.n, s.errno
	clear(s.hs[:len(ms)]) // drop the references to the caller's buffers
	if err == nil && errno != 0 {
		err = os.NewSyscallError("sendmmsg", errno)
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// sockaddr writes the address a, a *net.UDPAddr, into sa in the socket's
// family, an IPv4 address as a mapped one on an IPv6 socket, and returns
// its length.
func (c *conn) sockaddr(a net.Addr, sa *unix.RawSockaddrInet6) (uint32, error) {
	ua, ok := a.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, errAddr
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return 0, errAddr
	}
	if !c.v6 {
		if !ip.Unmap().Is4() {
			return 0, errAddr
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(ua.Port), Addr: ip.Unmap().As4()}
		return unix.SizeofSockaddrInet4, nil
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(ua.Port), Addr: ip.As16()}
	if ua.Zone != "" {
		id, err := zoneIndex(ua.Zone)
		if err != nil {
			return 0, err
		}
		sa.Scope_id = id
	}
	return unix.SizeofSockaddrInet6, nil
}

// zoneIndex returns the interface index of an IPv6 zone, a number (as
// ReadBatch gives) or an interface name.
func zoneIndex(zone string) (uint32, error) {
	if id, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(id), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, err
	}
	return uint32(ifi.Index), nil
}
