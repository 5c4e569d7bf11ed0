package transport

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
)

// Meta is what a forwarded query carries upstream beyond its message: the
// tags policy gave it and the trace id that correlates it across hops.
// The edge puts the same in EDNS options of the message itself, which is
// all UDP, TCP, DoT and DoQ upstreams see; the DoH exchanger also sends
// it as HTTP request headers (see DoH.Exchange). Probes and diagnose
// carry none.
type Meta struct {
	// Tags are "key=value" labels, sent one X-DNS-Tag header each.
	Tags []string
	// TraceID is sent as X-DNS-TraceID and, when it is a W3C trace id
	// (32 lower-case hex digits, not all zero), as the trace id of a
	// traceparent header whose parent id is SpanID.
	TraceID string
	// SpanID is the 16 hex digit parent id of that traceparent; when it
	// is empty the exchanger makes a random one per request.
	SpanID string
	// Sampled sets the sampled flag of the traceparent.
	Sampled bool
	// Attempt, when set, is called by the race engine as each attempt
	// of the query on a path starts, with the attempt's context and the
	// path's name; the context it returns is the one the exchanger gets
	// (it may carry a Meta of its own, with the attempt's span id), and
	// end is called with the attempt's outcome. Tracing uses it for a
	// span per attempt.
	Attempt func(ctx context.Context, path string) (_ context.Context, end func(Class, error))
}

type metaKey struct{}

// metaCtx is a context carrying a Meta: one allocation for both, where
// context.WithValue would take two.
type metaCtx struct {
	context.Context
	m Meta
}

func (c *metaCtx) Value(key any) any {
	if key == (metaKey{}) {
		return &c.m
	}
	return c.Context.Value(key)
}

// WithQueryMeta returns ctx carrying m for the exchangers of the query
// sent with it. Only the DoH exchanger reads it.
func WithQueryMeta(ctx context.Context, m Meta) context.Context {
	return &metaCtx{ctx, m}
}

// QueryMeta returns the Meta ctx carries, nil when none. It is shared:
// read-only.
func QueryMeta(ctx context.Context) *Meta {
	m, _ := ctx.Value(metaKey{}).(*Meta)
	return m
}

// IsTraceID reports whether s is a W3C Trace Context trace id: 32
// lower-case hex digits, not all zero.
func IsTraceID(s string) bool { return isLowerHex(s, 32) }

// IsSpanID reports whether s is a W3C Trace Context parent id: 16
// lower-case hex digits, not all zero.
func IsSpanID(s string) bool { return isLowerHex(s, 16) }

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	zero := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '0':
		case '1' <= c && c <= '9', 'a' <= c && c <= 'f':
			zero = false
		default:
			return false
		}
	}
	return !zero
}

// Trace header names of a DoH request.
const (
	HeaderTraceParent = "Traceparent"
	HeaderTraceID     = "X-Dns-Traceid"
	HeaderTag         = "X-Dns-Tag"
)

// metaHeaders adds the fields of m to h.
func metaHeaders(h map[string][]string, m *Meta) {
	if m == nil {
		return
	}
	if len(m.Tags) > 0 {
		h[HeaderTag] = m.Tags
	}
	if m.TraceID != "" {
		h[HeaderTraceID] = []string{m.TraceID}
		span := m.SpanID
		if span == "" {
			span = newSpanID()
		}
		if IsTraceID(m.TraceID) && IsSpanID(span) {
			flags := "00"
			if m.Sampled {
				flags = "01"
			}
			h[HeaderTraceParent] = []string{"00-" + m.TraceID + "-" + span + "-" + flags}
		}
	}
}

// newSpanID returns a random W3C parent id: 16 hex digits, not all zero.
func newSpanID() string {
	var b [8]byte
	for b == [8]byte{} {
		binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	}
	return hex.EncodeToString(b[:])
}
