package transporttest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/miekg/dns"
)

// handler answers one query that arrived on an endpoint. It returns the
// packed reply, or nil to send nothing. ctx is cancelled when the endpoint
// closes, so a handler that waits must watch it.
type handler func(ctx context.Context, q *dns.Msg, tcp bool) []byte

// endpoint is one address served over UDP and TCP on the same port. Sockets
// are bound by bind before any goroutine starts, so a client may send as soon
// as bind returns: the kernel queues datagrams and connections until serve
// reads them.
type endpoint struct {
	udp *net.UDPConn
	tcp *net.TCPListener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// bind opens UDP and TCP on addr. With port 0 the UDP socket picks the port
// and TCP binds the same one; when another socket already holds that TCP
// port, a fresh one is tried a few times. The error wraps the system error
// so callers can test for syscall.EADDRINUSE.
func bind(addr netip.AddrPort) (*endpoint, error) {
	for i := 0; ; i++ {
		e, err := bindOnce(addr)
		if err == nil || addr.Port() != 0 || i == bindAttempts || !errors.Is(err, syscall.EADDRINUSE) {
			return e, err
		}
	}
}

func bindOnce(addr netip.AddrPort) (*endpoint, error) {
	network := "udp4"
	if addr.Addr().Is6() {
		network = "udp6"
	}
	uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("bind udp %s: %w", addr, err)
	}
	port := uc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	taddr := netip.AddrPortFrom(addr.Addr(), port)
	tc, err := net.ListenTCP("tcp"+network[3:], net.TCPAddrFromAddrPort(taddr))
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("bind tcp %s: %w", taddr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &endpoint{
		udp:    uc,
		tcp:    tc,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[net.Conn]struct{}),
	}, nil
}

// addr returns the bound address; UDP and TCP share it.
func (e *endpoint) addr() netip.AddrPort {
	return e.udp.LocalAddr().(*net.UDPAddr).AddrPort()
}

// serve starts the UDP read loop and the TCP accept loop. Every goroutine it
// starts ends before close returns.
func (e *endpoint) serve(h handler) {
	e.wg.Add(2)
	go e.serveUDP(h)
	go e.serveTCP(h)
}

// close stops both loops, closes every open TCP connection, cancels handlers
// that are waiting, and waits for all goroutines. It is idempotent.
func (e *endpoint) close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.wg.Wait()
		return
	}
	e.closed = true
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.cancel()
	e.udp.Close()
	e.tcp.Close()
	e.wg.Wait()
}

func (e *endpoint) serveUDP(h handler) {
	defer e.wg.Done()
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, from, err := e.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP errors surfaced on the socket
		}
		q := new(dns.Msg)
		if q.Unpack(buf[:n]) != nil || q.Response {
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if out := h(e.ctx, q, false); out != nil {
				e.udp.WriteToUDPAddrPort(out, from)
			}
		}()
	}
}

func (e *endpoint) serveTCP(h handler) {
	defer e.wg.Done()
	for {
		c, err := e.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			c.Close()
			return
		}
		e.conns[c] = struct{}{}
		e.wg.Add(1)
		e.mu.Unlock()
		go e.serveConn(c, h)
	}
}

// serveConn reads RFC 7766 length-prefixed queries until the peer closes.
// Each query runs in its own goroutine, so pipelined queries are answered
// concurrently and, with a delay, possibly out of order (RFC 7766 §6.2.1.1).
func (e *endpoint) serveConn(c net.Conn, h handler) {
	defer e.wg.Done()
	var (
		writeMu sync.Mutex
		conn    sync.WaitGroup
	)
	defer func() {
		conn.Wait()
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
		c.Close()
	}()
	var lenBuf [2]byte
	for {
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint16(lenBuf[:])
		if n == 0 {
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		q := new(dns.Msg)
		if q.Unpack(buf) != nil || q.Response {
			return
		}
		conn.Add(1)
		go func() {
			defer conn.Done()
			out := h(e.ctx, q, true)
			if out == nil {
				return
			}
			frame := make([]byte, 2+len(out))
			binary.BigEndian.PutUint16(frame, uint16(len(out)))
			copy(frame[2:], out)
			writeMu.Lock()
			c.Write(frame)
			writeMu.Unlock()
		}()
	}
}
