// Package doqclient is a small DNS over QUIC client (RFC 9250) for tests,
// end-to-end checks and load generation: one connection, one stream per
// query.
package doqclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
)

// DoQ error codes (RFC 9250 §4.3), as seen in a *quic.ApplicationError
// (connection closed) or a *quic.StreamError (stream reset).
const (
	NoError          = 0x0
	InternalError    = 0x1
	ProtocolError    = 0x2
	RequestCancelled = 0x3
	ExcessiveLoad    = 0x4
	UnspecifiedError = 0x5
)

// ALPN is the TLS application protocol of DoQ (RFC 9250 §4.1.1).
const ALPN = "doq"

// Config configures Dial. TLS is required.
type Config struct {
	// TLS is the client TLS configuration: ServerName (the SNI, which may
	// carry a client id), RootCAs, and a ClientSessionCache for
	// resumption and 0-RTT. Dial uses a clone with NextProtos ["doq"].
	TLS *tls.Config
	// Network is "udp4", "udp6" or "udp" (the default), the family the
	// client socket is pinned to.
	Network string
	// Early dials with 0-RTT (RFC 9250 §4.5): when TLS.ClientSessionCache
	// holds a ticket for the server, queries sent before the handshake
	// completes go in 0-RTT packets. Only replay-safe queries belong there.
	Early bool
	// QUIC is the quic-go configuration; nil takes quic-go's defaults.
	QUIC *quic.Config
}

// Client is one DoQ connection. Its methods are safe for concurrent use;
// each Exchange uses its own stream.
type Client struct {
	pc *net.UDPConn
	tr *quic.Transport

	mu   sync.Mutex
	conn *quic.Conn
}

// Dial connects to addr ("host:port") and, unless cfg.Early is set, waits
// for the handshake to complete. The client owns its UDP socket; Close
// releases it.
func Dial(ctx context.Context, addr string, cfg Config) (*Client, error) {
	if cfg.TLS == nil {
		return nil, errors.New("dial doq: no TLS configuration")
	}
	netw := cfg.Network
	if netw == "" {
		netw = "udp"
	}
	raddr, err := net.ResolveUDPAddr(netw, addr)
	if err != nil {
		return nil, fmt.Errorf("dial doq %s: %w", addr, err)
	}
	pc, err := net.ListenUDP(netw, nil)
	if err != nil {
		return nil, fmt.Errorf("dial doq %s over %s: %w", addr, netw, err)
	}
	tlsConf := cfg.TLS.Clone()
	tlsConf.NextProtos = []string{ALPN}
	tr := &quic.Transport{Conn: pc}
	dial := tr.Dial
	if cfg.Early {
		dial = tr.DialEarly
	}
	conn, err := dial(ctx, raddr, tlsConf, cfg.QUIC)
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, fmt.Errorf("dial doq %s: %w", addr, err)
	}
	return &Client{pc: pc, tr: tr, conn: conn}, nil
}

// Conn returns the QUIC connection, for tests that need its state or raw
// streams.
func (c *Client) Conn() *quic.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// Exchange sends m on a new stream and returns the reply. The query goes
// out with Message ID 0 (RFC 9250 §4.2.1) and the reply gets m's ID back;
// m is not modified. ctx bounds the whole exchange; when it ends first,
// the stream is reset with DOQ_REQUEST_CANCELLED. A query sent in 0-RTT
// that the server rejected is sent again once the handshake is complete.
func (c *Client) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	wire, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	if len(wire) > dns.MaxMsgSize {
		return nil, fmt.Errorf("query of %d bytes is too long", len(wire))
	}
	frame := make([]byte, 2+len(wire))
	frame[0], frame[1] = byte(len(wire)>>8), byte(len(wire))
	copy(frame[2:], wire)
	frame[2], frame[3] = 0, 0 // Message ID 0

	r, err := c.roundTrip(ctx, frame)
	if errors.Is(err, quic.Err0RTTRejected) {
		if err = c.next(ctx); err == nil {
			r, err = c.roundTrip(ctx, frame)
		}
	}
	if err != nil {
		return nil, err
	}
	reply := new(dns.Msg)
	if err := reply.Unpack(r); err != nil {
		return nil, fmt.Errorf("unpack reply: %w", err)
	}
	reply.Id = m.Id
	return reply, nil
}

// roundTrip writes frame on a new stream with the FIN and reads one
// length-prefixed reply.
func (c *Client) roundTrip(ctx context.Context, frame []byte) ([]byte, error) {
	s, err := c.Conn().OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open doq stream: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		s.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, err := func() ([]byte, error) {
		if _, err := s.Write(frame); err != nil {
			return nil, fmt.Errorf("write doq query: %w", err)
		}
		s.Close()
		var hdr [2]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			return nil, fmt.Errorf("read doq reply: %w", err)
		}
		b := make([]byte, int(hdr[0])<<8|int(hdr[1]))
		if _, err := io.ReadFull(s, b); err != nil {
			return nil, fmt.Errorf("read doq reply: %w", err)
		}
		// The server ends the stream after its reply (RFC 9250 §4.2).
		var one [1]byte
		if k, _ := s.Read(one[:]); k > 0 {
			return nil, errors.New("read doq reply: data after the reply")
		}
		return b, nil
	}()
	if err != nil {
		s.CancelRead(RequestCancelled)
		s.CancelWrite(RequestCancelled)
		// The stream deadline may fire just before ctx notices its own.
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			err = fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		} else if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
		return nil, err
	}
	return b, nil
}

// next switches to the connection that follows a 0-RTT rejection.
func (c *Client) next(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, err := c.conn.NextConnection(ctx)
	if err != nil {
		return fmt.Errorf("after 0-rtt rejection: %w", err)
	}
	c.conn = conn
	return nil
}

// Close closes the connection with DOQ_NO_ERROR and releases the socket.
func (c *Client) Close() error {
	c.Conn().CloseWithError(NoError, "")
	return errors.Join(c.tr.Close(), c.pc.Close())
}
