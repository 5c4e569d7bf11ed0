package middleware

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

// LoopOptionCode is the EDNS(0) option code dnsedge puts on the queries it
// forwards, from the range RFC 6891 §9 reserves for local use.
const LoopOptionCode = 65073

// Loop detects queries that come back around: every query dnsedge
// forwards carries an EDNS option with this instance's random nonce, and a
// query that arrives carrying it was sent by this very instance. That
// happens when a pod's resolv.conf points at its own sidecar and the
// sidecar forwards to resolv.conf, or when two forwarders point at each
// other: the marks of every instance a query went through travel with it. Such a query is answered SERVFAIL and
// logged instead of circling until every hop times out.
type Loop struct {
	nonce []byte
	mark  *dns.EDNS0_LOCAL // the option, shared by every query: read-only
	log   *slog.Logger
}

// NewLoop returns a loop detector with a fresh nonce.
func NewLoop(log *slog.Logger) *Loop {
	n := make([]byte, 8)
	rand.Read(n)
	return &Loop{nonce: n, mark: &dns.EDNS0_LOCAL{Code: LoopOptionCode, Data: n}, log: log}
}

// option returns this instance's mark, for a forwarded query's OPT.
func (l *Loop) option() dns.EDNS0 { return l.mark }

// maxLoopMarks bounds how many other instances' marks a query carries on.
const maxLoopMarks = 8

// carried returns the loop marks of other dnsedge instances in a client's
// OPT, so a loop through several instances (A → B → A) is caught by the
// first instance that sees its own mark again.
func (l *Loop) carried(opt *dns.OPT) []dns.EDNS0 {
	var out []dns.EDNS0
	for _, o := range opt.Option {
		if lo, ok := o.(*dns.EDNS0_LOCAL); ok && lo.Code == LoopOptionCode && len(out) < maxLoopMarks {
			out = append(out, lo)
		}
	}
	return out
}

// ErrLoop is the cause of the answer to a query that came back around.
var ErrLoop = errors.New("forwarding loop: this query was sent by this dnsedge itself")

// Middleware rejects queries carrying this instance's nonce.
func (l *Loop) Middleware(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if l.looped(req.Msg) {
			q := req.Question()
			l.log.Warn("forwarding loop detected: an upstream sent our own query back; check that no upstream (or resolv.conf) points at dnsedge itself",
				"client", req.Client.String(), "name", q.Name, "type", dns.TypeToString[q.Qtype], "trace_id", req.Trace())
			return nil, &pipeline.Error{EDE: dns.ExtendedErrorCodeOther, Text: "forwarding loop detected", Err: ErrLoop}
		}
		return next.ServeDNS(ctx, req)
	})
}

func (l *Loop) looped(m *dns.Msg) bool {
	opt := m.IsEdns0()
	if opt == nil {
		return false
	}
	for _, o := range opt.Option {
		if lo, ok := o.(*dns.EDNS0_LOCAL); ok && lo.Code == LoopOptionCode && bytes.Equal(lo.Data, l.nonce) {
			return true
		}
	}
	return false
}
