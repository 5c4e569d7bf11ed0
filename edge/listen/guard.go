package listen

import (
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// guard checks req against the listener's ACL and the rate limiter before
// any handler sees it. A query that may go on gets a nil reply and the
// rate limiter's client, whose done the caller calls once it is answered.
// Otherwise the reply is the answer of the listener:
//
//   - a client outside the ACL: REFUSED;
//   - a client over its rate on UDP: TC=1 for TCShare of its queries
//     (a real client retries over TCP, a spoofed source cannot), REFUSED
//     for the rest; over its rate on another transport, or over its
//     queries in flight: REFUSED.
//
// These replies carry the question and, when the query had EDNS, a bare
// OPT (Finish adds it): never more bytes than the query.
func (c *core) guard(req *pipeline.Request) (*dns.Msg, *rateClient) {
	client := req.Client.Addr()
	if !c.acl.Allows(client) {
		c.m.guarded(guardACL)
		return guardReply(req.Msg, dns.RcodeRefused, false), nil
	}
	v, rc := c.rl.admit(client, req.ClientID, c.kind == pipeline.KindUDP)
	switch v {
	case limitTC:
		c.m.guarded(guardRateTC)
		return guardReply(req.Msg, dns.RcodeSuccess, true), nil
	case limitRefuse:
		c.m.guarded(guardRateRefused)
		return guardReply(req.Msg, dns.RcodeRefused, false), nil
	}
	return nil, rc
}

// guardReply is the bare reply to q with rcode, TC set when tc.
func guardReply(q *dns.Msg, rcode int, tc bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	m.Truncated = tc
	return m
}
