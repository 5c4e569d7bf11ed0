//go:build linux

package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stream is the raw read(2) and write(2) calls of a TCP connection or a
// connected UDP socket. Safe for concurrent use as a net.Conn is: one
// Read and one Write may run at the same time.
type stream struct {
	c       net.Conn // for its addresses in errors
	rc      syscall.RawConn
	network string // of errors: tcp or udp
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
	s := stream{c: c, rc: rc, network: network}
	switch c := c.(type) {
	case *net.TCPConn:
		return &tcpStream{TCPConn: c, s: s}
	case *net.UDPConn:
		return &udpStream{UDPConn: c, s: s}
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
	var n int
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			n, errno = int(r), e
			if e != unix.EINTR {
				return e != unix.EAGAIN
			}
		}
	})
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
	done := 0
	var errno syscall.Errno
	err := s.rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			r, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[done])), uintptr(len(b)-done))
			switch e {
			case 0:
				done += int(r)
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
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
