package middleware

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

// Trace gives every query a trace id: the one the client sent (the DoH
// listener takes it from traceparent or X-DNS-TraceID) or else a new
// W3C trace id, 32 hex digits of a random 128-bit number, made when
// something first reads it with req.Trace (the query log, the forward
// handler, the DoH listener's echo, an error log line), so that a query
// nothing reports costs no id.
func Trace(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		req.WantTraceID()
		return next.ServeDNS(ctx, req)
	})
}

// NewTraceID returns a random W3C trace id (see pipeline.NewTraceID).
func NewTraceID() string { return pipeline.NewTraceID() }

// NewSpanID returns a random W3C parent id (16 hex digits, not all zero).
func NewSpanID() string {
	var b [8]byte
	for {
		binary.LittleEndian.PutUint64(b[:], rand.Uint64())
		if b != [8]byte{} {
			return hex.EncodeToString(b[:])
		}
	}
}
