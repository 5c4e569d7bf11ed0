//go:build linux

package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stream is the raw read(2) and write(2) calls of a TCP connection or a
// connected UDP socket. Safe for concurrent use as a net.Conn is: one
// Read and one Write may run at the same time (Reads wait for each other,
// as Writes do).
type stream struct {
	c       net.Conn // for its addresses in errors
	rc      syscall.RawConn
	network string // of errors: tcp or udp
	rmu     sync.Mutex
	r       streamCall
	wmu     sync.Mutex
	w       streamCall
}

// streamCall is one side's call in progress: its buffer and what the
// system call gave. Its fn, handed to the RawConn, is bound once (see
// bind), so that a call allocates no closure and no result on the heap.
type streamCall struct {
	b     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// bind makes the functions the RawConn calls; s must be at its final
// address.
func (s *stream) bind() {
	s.r.fn = s.r.read
	s.w.fn = s.w.write
}

// read is read(2) of c.b into c.n and c.errno, retried on EINTR; false
// (wait for readiness) on EAGAIN.
func (c *streamCall) read(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&c.b[0])), uintptr(len(c.b)))
		c.n, c.errno = int(r), e
		if e != unix.EINTR {
			return e != unix.EAGAIN
		}
	}
}

// write is write(2) of c.b past the c.n bytes written, until all of it
// is or an error other than EINTR and EAGAIN (in c.errno); false (wait
// for room) on EAGAIN.
func (c *streamCall) write(fd uintptr) bool {
	for c.n < len(c.b) {
		r, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.b[c.n])), uintptr(len(c.b)-c.n))
		switch e {
		case 0:
			c.n += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			c.errno = e
			return true
		}
	}
	return true
}

// tcpStream and udpStream keep every method of their connection
// (CloseWrite, SetLinger, ...) but Read and Write.
type tcpStream struct {
	*net.TCPConn
	s stream
}

func (t *tcpStream) Read(b []byte) (int, error)  { return t.s.Read(b) }
func (t *tcpStream) Write(b []byte) (int, error) { return t.s.Write(b) }

type udpStream struct {
	*net.UDPConn
	s stream
}

func (u *udpStream) Read(b []byte) (int, error)  { return u.s.Read(b) }
func (u *udpStream) Write(b []byte) (int, error) { return u.s.Write(b) }

// newStream returns the stream of c, sc being c's own syscall.Conn.
func newStream(c net.Conn, sc syscall.Conn, network string) net.Conn {
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	switch c := c.(type) {
	case *net.TCPConn:
		t := &tcpStream{TCPConn: c, s: stream{c: c, rc: rc, network: network}}
		t.s.bind()
		return t
	case *net.UDPConn:
		u := &udpStream{UDPConn: c, s: stream{c: c, rc: rc, network: network}}
		u.s.bind()
		return u
	}
	return c
}

// Read reads what is buffered, up to len(b) bytes (on UDP, one datagram,
// cut to len(b)), waiting for something when nothing is; on TCP io.EOF
// once the peer has closed its side.
func (s *stream) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.r.b, s.r.n, s.r.errno = b, 0, 0
	err := s.rc.Read(s.r.fn)
	n, errno := s.r.n, s.r.errno
	s.r.b = nil
	if err == nil && errno != 0 {
		err = os.NewSyscallError("read", errno)
	}
	if err != nil {
		return 0, s.opError("read", err)
	}
	if n == 0 && s.network == "tcp" {
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting for room as needed, or fails; on UDP b
// is one datagram.
func (s *stream) Write(b []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.w.b, s.w.n, s.w.errno = b, 0, 0
	err := s.rc.Write(s.w.fn)
	done, errno := s.w.n, s.w.errno
	s.w.b = nil
	if err == nil && errno != 0 {
		err = os.NewSyscallError("write", errno)
	}
	if err != nil {
		return done, s.opError("write", err)
	}
	return done, nil
}

// opError wraps err as the net package does; an error RawConn returned
// (a deadline, a closed connection) is an *net.OpError already, which
// keeps its cause.
func (s *stream) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		e := *oe
		e.Op = op // "raw-read" would puzzle a log's reader
		return &e
	}
	return &net.OpError{Op: op, Net: s.network, Source: s.c.LocalAddr(), Addr: s.c.RemoteAddr(), Err: err}
}
