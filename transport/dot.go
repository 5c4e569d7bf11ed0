package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
)

// NewDoT returns a DNS over TLS (RFC 7858) exchanger for addr: the TCP
// exchanger, with its pipelining, idle and retry policy (see TCP), whose
// connections are TLS. It dials "tcp4" or "tcp6" to addr only (an
// IPv4-mapped address counts as IPv4) and never resolves a name; the
// handshake offers ALPN "dot" (RFC 7858 §3.2), requires TLS 1.2 at least
// and verifies the server as base says. Each exchanger has its own TLS
// session cache, so a reconnect resumes the previous session.
//
// base must carry a ServerName: ClientTLSConfig builds one. It is cloned,
// not kept. The dial and the handshake are bounded by the query's ctx.
// A failed handshake, certificate verification failures included, is
// ClassNetwork: the path cannot be used, like a refused connection. The
// returned exchanger is safe for concurrent use; Close stops everything
// it started.
func NewDoT(addr netip.AddrPort, base *tls.Config, cfg TCPConfig) (*TCP, error) {
	conf, err := exchangerTLS(base, "dot")
	if err != nil {
		return nil, fmt.Errorf("new dot exchanger for %s: %w", addr, err)
	}
	p := pin(addr, "tcp")
	t := newTCP(p, cfg, func(ctx context.Context) (net.Conn, error) {
		return dialTLS(ctx, p, conf)
	})
	t.pad = true
	return t, nil
}

// dialTLS dials p and completes a TLS handshake, both bounded by ctx.
func dialTLS(ctx context.Context, p pinnedAddr, conf *tls.Config) (net.Conn, error) {
	raw, err := p.dialStream(ctx)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", conf.ServerName, err)
	}
	return &tlsConn{Conn: tc, raw: raw}, nil
}

// tlsConn is a TLS connection whose Close closes the socket at once.
// tls.Conn.Close first sends close_notify, which may block for seconds on
// a peer that stopped reading; the exchangers close connections while
// holding locks, and every DNS message is length-framed, so truncation
// cannot go unnoticed without it.
type tlsConn struct {
	*tls.Conn
	raw net.Conn
}

func (c *tlsConn) Close() error { return c.raw.Close() }
