package transport

import (
	"context"
	"net"
	"net/netip"
)

// DialTrace is told about the connections exchangers make for a query
// whose ctx carries it (WithDialTrace), as net/http/httptrace does for
// HTTP: dnsedge query reports connect times from it. Forwarding sets
// none. Its functions may be called from other goroutines than the
// query's.
type DialTrace struct {
	// Connected is called when a stream socket (TCP, DoT, DoH over
	// HTTP/2) has connected, before any TLS handshake, with its local
	// address. QUIC has no such moment apart from its handshake.
	Connected func(local netip.AddrPort)
}

type dialTraceKey struct{}

// WithDialTrace returns ctx carrying t for the exchangers of the query
// sent with it.
func WithDialTrace(ctx context.Context, t *DialTrace) context.Context {
	return context.WithValue(ctx, dialTraceKey{}, t)
}

// connected tells the DialTrace of ctx, if any, that c has connected.
func connected(ctx context.Context, c net.Conn) {
	t, _ := ctx.Value(dialTraceKey{}).(*DialTrace)
	if t == nil || t.Connected == nil {
		return
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		t.Connected(a.AddrPort())
	}
}
