package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/quic-go/quic-go"
)

// quicDialer dials QUIC connections to one address from one UDP socket
// bound to the address's family ("udp4" or "udp6", any local address), so
// a QUIC path cannot drift to the other family. The socket is opened by
// the first dial and kept until close. It is safe for concurrent use.
type quicDialer struct {
	p pinnedAddr

	mu     sync.Mutex
	closed bool
	udp    *net.UDPConn
	tr     *quic.Transport
}

// dial opens a connection to the pinned address, bounded by ctx.
func (d *quicDialer) dial(ctx context.Context, conf *tls.Config, qconf *quic.Config) (*quic.Conn, error) {
	tr, err := d.transport()
	if err != nil {
		return nil, err
	}
	c, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(d.p.addr), conf, qconf)
	if err != nil {
		return nil, fmt.Errorf("dial quic: %w", err)
	}
	return c, nil
}

func (d *quicDialer) transport() (*quic.Transport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, net.ErrClosed
	}
	if d.tr != nil {
		return d.tr, nil
	}
	uc, err := net.ListenUDP(d.p.network, nil)
	if err != nil {
		return nil, fmt.Errorf("open %s socket: %w", d.p.network, err)
	}
	d.udp = uc
	d.tr = &quic.Transport{Conn: uc}
	return d.tr, nil
}

// close closes the transport, and with it every connection dialed on it,
// and the socket. Later dials fail with net.ErrClosed. It is idempotent.
func (d *quicDialer) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.tr == nil {
		return nil
	}
	err := errors.Join(d.tr.Close(), d.udp.Close())
	d.tr, d.udp = nil, nil
	return err
}

// quicClass classes an error of a QUIC dial or stream that is not the
// ctx's doing: timeouts (a handshake or idle timeout inside quic-go, a
// stream deadline) are ClassTimeout; resets, closes, refused and failed
// handshakes, certificate verification included, are ClassNetwork.
func quicClass(ctx context.Context, err error) Class {
	if ctx.Err() != nil {
		return ctxClass(ctx)
	}
	if isTimeout(err) {
		return ClassTimeout
	}
	return ClassNetwork
}

// readFrame reads one message with a two-byte length prefix (RFC 1035
// §4.2.2, RFC 9250 §4.2) from r into buf, which must hold maxMsgSize
// bytes, and returns its length. A stream that ends before a whole frame,
// or a zero length, wraps ErrMalformed; other read errors are returned as
// they are.
func readFrame(r io.Reader, buf []byte) (int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: stream ended before a length prefix", ErrMalformed)
		}
		return 0, err
	}
	n := int(hdr[0])<<8 | int(hdr[1])
	if n == 0 {
		return 0, fmt.Errorf("%w: zero-length message", ErrMalformed)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: stream ended inside a %d-byte message", ErrMalformed, n)
		}
		return 0, err
	}
	return n, nil
}
