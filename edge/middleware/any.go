package middleware

import (
	"context"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// ANYTTL is the TTL of the synthesized HINFO answer to an ANY query.
const ANYTTL = 3600

// ANY answers a query of type ANY that policy did not allow
// (pipeline.Request.AllowANY false) with the synthesized HINFO record of
// RFC 8482 §4.2, CPU "RFC8482" and an empty OS, without going upstream:
// forwarded, an ANY query gets every RRset an upstream holds, which makes
// it the favourite of amplification attacks, and no client needs it.
// Other queries, and allowed ANY queries, go to next. It sits after the
// local zones (which answer ANY with one RRset of their own) and before
// the cache and forward. Safe for concurrent use; it keeps no state.
func ANY(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if req.AllowANY || len(req.Msg.Question) != 1 || req.Msg.Question[0].Qtype != dns.TypeANY {
			return next.ServeDNS(ctx, req)
		}
		return anyReply(req.Msg), nil
	})
}

var _ pipeline.Middleware = ANY

// anyReply is the RFC 8482 §4.2 answer to q, an ANY query.
func anyReply(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	m.Answer = []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeHINFO, Class: q.Question[0].Qclass, Ttl: ANYTTL},
		Cpu: "RFC8482",
	}}
	return m
}
