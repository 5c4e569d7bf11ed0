package middleware

import (
	"context"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Version answers the CHAOS-class TXT queries for version.bind and
// version.server with the version of the running binary, the way BIND,
// Unbound and dnsdist do; other queries go to next. An empty version
// lets every query through. Safe for concurrent use.
func Version(version string) pipeline.Middleware {
	return func(next pipeline.Handler) pipeline.Handler {
		if version == "" {
			return next
		}
		return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
			q := req.Msg.Question
			if len(q) != 1 || q[0].Qclass != dns.ClassCHAOS || (q[0].Qtype != dns.TypeTXT && q[0].Qtype != dns.TypeANY) {
				return next.ServeDNS(ctx, req)
			}
			switch strings.ToLower(q[0].Name) {
			case "version.bind.", "version.server.":
			default:
				return next.ServeDNS(ctx, req)
			}
			m := new(dns.Msg)
			m.SetReply(req.Msg)
			m.Authoritative = true
			m.Answer = []dns.RR{&dns.TXT{
				Hdr: dns.RR_Header{Name: q[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS},
				Txt: []string{version},
			}}
			return m, nil
		})
	}
}
