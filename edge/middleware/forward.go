// Package middleware holds the small pipeline stages: each a type in its
// own file with its own tests.
package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

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
	carry  Carry
}

// Carry is what the forward handler sends upstream besides the question:
// the EDNS option codes of the tags and of the trace id.
type Carry struct {
	// TagCode is the option code of req.Tags; TraceCode that of
	// req.TraceID. Zero sends no such option.
	TagCode, TraceCode uint16
	// Attempt, when set, is the transport.Meta hook called per upstream
	// attempt (tracing's span per attempt).
	Attempt func(ctx context.Context, path string) (context.Context, func(transport.Class, error))
}

var _ pipeline.Handler = (*Forward)(nil)

// NewForward returns a forward handler over groups; defaultGroup must be
// one of them. loop, when not nil, marks every query it sends so one that
// comes back around is recognised. carry names the options that take
// tags and the trace id upstream.
func NewForward(groups map[string]*transport.Group, defaultGroup string, loop *Loop, carry Carry) (*Forward, error) {
	d, ok := groups[defaultGroup]
	if !ok {
		return nil, fmt.Errorf("default group %q does not exist", defaultGroup)
	}
	return &Forward{groups: groups, deflt: d, loop: loop, carry: carry}, nil
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
	// The Meta is for DoH upstreams (headers) and the tracer's attempt
	// spans; other upstreams get tags and trace id in EDNS options.
	if (len(req.Tags) > 0 || req.Trace() != "") && g.UsesQueryMeta() || f.carry.Attempt != nil {
		ctx = transport.WithQueryMeta(ctx, transport.Meta{
			Tags: req.Tags, TraceID: req.Trace(), Sampled: traceSampled(req.TraceParent), Attempt: f.carry.Attempt,
		})
	}
	q := req.Msg
	relay := req.TSIG == pipeline.TSIGBadKey
	if !relay {
		q = f.upstreamQuery(req)
	}
	res, err := g.Exchange(ctx, q)
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
	// A query signed with a key dnsedge does not hold went as the client
	// sent it, and its answer, signed by the key's holder, is relayed as
	// it came (RFC 8945 §5.5). Names go to the client compressed, as
	// upstreams send them and the cache's answers go: unpacking does
	// not say so, and an answer packed without would be longer, and
	// truncated sooner, than the upstream's.
	if !relay {
		res.Msg.Authoritative = false
		res.Msg.RecursionAvailable = true
		res.Msg.Compress = true
		if w := res.Wire; len(w) >= 12 {
			w[2] &^= 0x04 // AA
			w[3] |= 0x80  // RA
			req.Upstream = pipeline.UpstreamReply{Msg: res.Msg, Wire: w}
		}
	}
	req.Outcome.Source = pipeline.SourceUpstream
	if res.Path != nil {
		req.Outcome.Path = res.Path.Name()
	}
	return res.Msg, nil
}

// upstreamQuery builds the query sent upstream from the client's: the same
// question and flags, the client's DO bit, and no client EDNS options
// (they are the client's business; a trusted client's tags are already in
// req.Tags) but the loop marks of the dnsedge instances the query already
// went through. It adds the ECS option of req.ECS (RFC 7871 §6, scope 0),
// the tag option (req.Tags joined with commas) and the trace option
// (req.TraceID in ASCII) when the request has them.
func (f *Forward) upstreamQuery(req *pipeline.Request) *dns.Msg {
	in := req.Msg
	// One allocation for the message, its OPT, its additional section,
	// the trace option and the loop mark; another for the ECS and tag
	// options, when it carries any (or a trace id longer than 32 bytes).
	u := new(upstreamMsg)
	q, opt := &u.msg, &u.opt
	*q = dns.Msg{
		MsgHdr: dns.MsgHdr{
			Id: in.Id, Opcode: in.Opcode, RecursionDesired: in.RecursionDesired,
			CheckingDisabled: in.CheckingDisabled, AuthenticatedData: in.AuthenticatedData,
		},
		Question: in.Question[:1:1],
	}
	*opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(transport.EDNSBufferSize)
	tags := len(req.Tags) > 0 && f.carry.TagCode != 0
	trace := f.carry.TraceCode != 0 && req.Trace() != ""
	copt := in.IsEdns0()
	if copt != nil {
		opt.SetDo(copt.Do())
		if f.loop != nil {
			opt.Option = f.loop.carried(copt)
		}
	}
	if req.ECS.IsValid() || tags || trace && len(req.TraceID) > len(u.traceData) {
		c := new(carried)
		if len(opt.Option) == 0 { // no other instance's loop mark
			opt.Option = c.opts[:0]
		}
		if req.ECS.IsValid() {
			opt.Option = append(opt.Option, c.ecs(req.ECS))
		}
		data := c.buf[:0]
		if tags {
			at := len(data)
			data = appendTagData(data, req.Tags)
			c.tag = dns.EDNS0_LOCAL{Code: f.carry.TagCode, Data: data[at:len(data):len(data)]}
			opt.Option = append(opt.Option, &c.tag)
		}
		if trace {
			at := len(data)
			data = append(data, req.TraceID...)
			c.trace = dns.EDNS0_LOCAL{Code: f.carry.TraceCode, Data: data[at:len(data):len(data)]}
			opt.Option = append(opt.Option, &c.trace)
		}
	} else if trace { // the default: a trace id, and nothing else of ours
		if len(opt.Option) == 0 {
			opt.Option = u.opts[:0]
		}
		n := copy(u.traceData[:], req.TraceID)
		u.trace = dns.EDNS0_LOCAL{Code: f.carry.TraceCode, Data: u.traceData[:n:n]}
		opt.Option = append(opt.Option, &u.trace)
	}
	if f.loop != nil {
		if len(opt.Option) == 0 {
			opt.Option = u.opts[:0]
		}
		opt.Option = append(opt.Option, f.loop.option())
	}
	u.extra[0] = opt
	q.Extra = u.extra[:]
	return q
}

// upstreamMsg is a query to forward, with what it is made of but the
// ECS and tag options (carried): most queries carry neither, and these
// bytes are allocated for every forwarded query. The trace option is
// here, since by default every forwarded query carries one.
type upstreamMsg struct {
	msg       dns.Msg
	opt       dns.OPT
	extra     [1]dns.RR
	opts      [2]dns.EDNS0 // the trace option and the loop mark, when they are all
	trace     dns.EDNS0_LOCAL
	traceData [32]byte // a W3C trace id's 32 hex digits
}

// carried holds the options a forwarded query carries upstream and,
// when they fit, their data and the option list.
type carried struct {
	subnet, tag, trace dns.EDNS0_LOCAL
	opts               [4]dns.EDNS0 // ours and the loop mark
	ecsData            [4 + 16]byte // family, source and scope prefix lengths, address
	buf                [96]byte     // tag and trace data, when they fit
}

// ecs returns the ECS option for p (RFC 7871 §6): family, source prefix
// length, scope 0 and the address cut to the bytes the prefix covers,
// with the bits past it zero. It is written as the option's data, the
// form that reaches the wire: miekg/dns packs its EDNS0_SUBNET with three
// allocations, and every forwarded query with a subnet pays for them.
func (c *carried) ecs(p netip.Prefix) *dns.EDNS0_LOCAL {
	p = p.Masked()
	d := c.ecsData[:4]
	if p.Addr().Is4() {
		d[1] = 1
		a := p.Addr().As4()
		d = append(d, a[:(p.Bits()+7)/8]...)
	} else {
		d[1] = 2
		a := p.Addr().As16()
		d = append(d, a[:(p.Bits()+7)/8]...)
	}
	d[0], d[2], d[3] = 0, byte(p.Bits()), 0
	c.subnet = dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: d}
	return &c.subnet
}

// traceSampled reports whether a W3C traceparent ("00-<trace>-<parent>-
// <flags>") has the sampled flag set.
func traceSampled(tp string) bool {
	if len(tp) != 55 {
		return false
	}
	c := tp[54]
	switch {
	case '0' <= c && c <= '9':
		return (c-'0')&1 == 1
	case 'a' <= c && c <= 'f':
		return (c-'a'+10)&1 == 1
	}
	return false
}
