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
// W3C trace id, 32 hex digits of a random 128-bit number. The query log
// and the forward handler read it from req.TraceID.
func Trace(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if req.TraceID == "" {
			req.TraceID = NewTraceID()
		}
		return next.ServeDNS(ctx, req)
	})
}

// NewTraceID returns a random W3C trace id (32 lower-case hex digits, not
// all zero). It is not secret: math/rand/v2's generator, seeded from the
// system, suffices, and costs no system call.
func NewTraceID() string {
	var b [16]byte
	for {
		binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
		if b != [16]byte{} {
			return hex.EncodeToString(b[:])
		}
	}
}

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
