// Package middleware holds the small pipeline stages: each a type in its
// own file with its own tests.
package middleware

import (
	"context"
	"errors"
	"fmt"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/miekg/dns"
)

// Forward ends the chain: it sends the query to the upstream group chosen
// for it (req.Route, or the default group) and returns the answer.
type Forward struct {
	groups map[string]*transport.Group
	deflt  *transport.Group
	loop   *Loop
}

var _ pipeline.Handler = (*Forward)(nil)

// NewForward returns a forward handler over groups; defaultGroup must be
// one of them. loop, when not nil, marks every query it sends so one that
// comes back around is recognised.
func NewForward(groups map[string]*transport.Group, defaultGroup string, loop *Loop) (*Forward, error) {
	d, ok := groups[defaultGroup]
	if !ok {
		return nil, fmt.Errorf("default group %q does not exist", defaultGroup)
	}
	return &Forward{groups: groups, deflt: d, loop: loop}, nil
}

// ServeDNS forwards req and returns the answer with AA cleared and RA set,
// recording in req.Outcome the source (upstream) and the ID of the path
// that answered. Failures come back as *pipeline.Error with EDE 22
// (No Reachable Authority) when every path timed out or none exist, and
// EDE 23 (Network Error) when the network refused; either wraps
// pipeline.ErrUpstreamFailed.
func (f *Forward) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	g := f.deflt
	if req.Route != "" {
		var ok bool
		if g, ok = f.groups[req.Route]; !ok {
			return nil, &pipeline.Error{EDE: dns.ExtendedErrorCodeOther, Err: fmt.Errorf("route %q names no upstream group", req.Route)}
		}
	}
	res, err := g.Exchange(ctx, f.upstreamQuery(req))
	if err != nil {
		ede, text := uint16(dns.ExtendedErrorCodeNoReachableAuthority), "no upstream answered in time"
		var re *transport.RaceError
		if errors.As(err, &re) && !re.Timeouts() {
			ede, text = dns.ExtendedErrorCodeNetworkError, "upstreams unreachable"
		}
		return nil, &pipeline.Error{EDE: ede, Text: text, Err: fmt.Errorf("forward to group %s: %w: %w", g.Name, pipeline.ErrUpstreamFailed, err)}
	}
	// dnsedge answers as a recursive resolver, whatever the upstream is:
	// it offers recursion (RA), and it is not the authority for the name
	// (AA belongs to the server that holds the zone, RFC 1035 §4.1.1).
	res.Msg.Authoritative = false
	res.Msg.RecursionAvailable = true
	req.Outcome.Source = pipeline.SourceUpstream
	if res.Path != nil {
		req.Outcome.Path = res.Path.Name()
	}
	return res.Msg, nil
}

// upstreamQuery builds the query sent upstream from the client's: the same
// question and flags, the client's DO bit, and no client EDNS options
// (they are the client's business; ECS is policy's, added elsewhere) but
// the loop marks of the dnsedge instances the query already went through.
func (f *Forward) upstreamQuery(req *pipeline.Request) *dns.Msg {
	in := req.Msg
	q := &dns.Msg{
		MsgHdr: dns.MsgHdr{
			Id: in.Id, Opcode: in.Opcode, RecursionDesired: in.RecursionDesired,
			CheckingDisabled: in.CheckingDisabled, AuthenticatedData: in.AuthenticatedData,
		},
		Question: in.Question[:1:1],
	}
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(transport.EDNSBufferSize)
	if copt := in.IsEdns0(); copt != nil {
		opt.SetDo(copt.Do())
		if f.loop != nil {
			opt.Option = f.loop.carried(copt)
		}
	}
	if f.loop != nil {
		opt.Option = append(opt.Option, f.loop.option())
	}
	q.Extra = []dns.RR{opt}
	return q
}
