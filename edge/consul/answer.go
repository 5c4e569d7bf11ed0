package consul

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Middleware returns the stage answering names under the domain; other
// queries go to next.
func (b *Backend) Middleware() pipeline.Middleware {
	return func(next pipeline.Handler) pipeline.Handler { return &stage{b: b, next: next} }
}

type stage struct {
	b    *Backend
	next pipeline.Handler
}

var _ pipeline.Handler = (*stage)(nil)

// staleText is the EXTRA-TEXT of EDE 3 on answers from an old view.
const staleText = "consul unreachable; answer from the last view"

// errNoView is the cause of SERVFAIL when a first view did not come in
// time.
var errNoView = errors.New("consul: no view of the name yet")

// ServeDNS answers a query for a name under the domain: the service's
// passing instances (warning ones too when only_passing is off), the
// node's or the hex address's records, NXDOMAIN for a name that fits no
// form or has no instance, NODATA for a type it has none of. The answer
// records are shuffled, and an answer too big for req.MaxSize is cut to
// what fits with TC set (additional records go first). A view older than
// StaleAfter adds EDE 3, Stale Answer (RFC 8914 §4.4). The first query of
// a name waits up to FirstWait for its watch; past that it gets SERVFAIL
// (EDE 22, No Reachable Authority).
func (s *stage) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	q := req.Msg
	if q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 || q.Question[0].Qclass != dns.ClassINET {
		return s.next.ServeDNS(ctx, req)
	}
	name := dnsname.Lower(dns.Fqdn(q.Question[0].Name))
	if !dns.IsSubDomain(s.b.cfg.Domain, name) {
		return s.next.ServeDNS(ctx, req)
	}
	req.Outcome.Source = pipeline.SourceZone
	size := req.MaxSize
	if req.Signer != nil {
		size -= req.Signer.Overhead() // the TSIG the listener adds
	}
	m, err := s.b.answer(ctx, q, name, size)
	if err != nil {
		return nil, err
	}
	if m.stale {
		req.Outcome.SetEDE(dns.ExtendedErrorCodeStaleAnswer, staleText)
	}
	return m.Msg, nil
}

// reply is an answer and whether it came from a stale view.
type reply struct {
	*dns.Msg
	stale bool
}

// answer answers q, whose name (lower case) is under the domain; size is
// the largest answer the client takes (0: no limit).
func (b *Backend) answer(ctx context.Context, q *dns.Msg, name string, size int) (reply, error) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	m.RecursionAvailable = true
	qq := q.Question[0]
	if name == b.cfg.Domain {
		// The apex: its SOA, NODATA for anything else.
		r := b.negative(m, dns.RcodeSuccess)
		if qq.Qtype == dns.TypeSOA {
			m.Answer, m.Ns = m.Ns, nil
		}
		return r, nil
	}
	n, err := ParseName(name, b.cfg.Domain)
	if err != nil {
		return b.negative(m, dns.RcodeNameError), nil
	}
	dc := n.Datacenter
	if dc == "" {
		dc = b.cfg.Datacenter
	}
	var age time.Duration
	switch n.Kind {
	case KindAddr:
		addRR(m, qq, n.Addr, 0)
		if len(m.Answer) == 0 {
			return b.negative(m, dns.RcodeSuccess), nil
		}
	case KindNode:
		w := b.node(n.Node, dc)
		if w == nil {
			return reply{}, errNoView
		}
		nv, a, ok := waitFirst(ctx, b, w)
		if !ok {
			return reply{}, noView(w)
		}
		age = a
		if !nv.found {
			return b.stale(b.negative(m, dns.RcodeNameError), age), nil
		}
		addRR(m, qq, nv.v4, 0)
		addRR(m, qq, nv.v6, 0)
		if len(m.Answer) == 0 {
			return b.stale(b.negative(m, dns.RcodeSuccess), age), nil
		}
	case KindService:
		w := b.service(n.Service, dc)
		if w == nil {
			return reply{}, errNoView
		}
		all, a, ok := waitFirst(ctx, b, w)
		if !ok {
			return reply{}, noView(w)
		}
		age = a
		found := false
		for i := range all {
			if b.eligible(&all[i], n.Tag) {
				found = true
				break
			}
		}
		if !found {
			return b.stale(b.negative(m, dns.RcodeNameError), age), nil
		}
		ttl := b.cfg.ttlFor(n.Service)
		if qq.Qtype == dns.TypeSRV {
			b.srv(m, qq, all, n, dc, ttl)
		} else {
			for i := range all {
				if !b.eligible(&all[i], n.Tag) {
					continue
				}
				for _, a := range [2]netip.Addr{all[i].v4, all[i].v6} {
					if a.IsValid() && !answered(m.Answer, a) {
						addRR(m, qq, a, ttl)
					}
				}
			}
		}
		if len(m.Answer) == 0 {
			return b.stale(b.negative(m, dns.RcodeSuccess), age), nil
		}
	}
	shuffle(m)
	r := b.stale(reply{Msg: m}, age)
	fit(r.Msg, q, size)
	return r, nil
}

// noView is the error of a query whose first view did not come in time.
func noView[T any](w *watch[T]) error {
	err := errNoView
	if e := w.lastErr.Load(); e != nil {
		err = errors.Join(errNoView, *e)
	}
	return &pipeline.Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority, Text: "consul: no view yet", Err: err}
}

// eligible reports whether in is answered: passing, or warning when
// only_passing is off, with tag when it is not empty.
func (b *Backend) eligible(in *instance, tag string) bool {
	if in.status != statusPassing && (*b.cfg.OnlyPassing || in.status != statusWarning) {
		return false
	}
	return tag == "" || in.hasTag(tag)
}

// answered reports whether rrs holds an address record of a.
func answered(rrs []dns.RR, a netip.Addr) bool {
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *dns.A:
			if b, ok := netip.AddrFromSlice(r.A.To4()); ok && b == a {
				return true
			}
		case *dns.AAAA:
			if b, ok := netip.AddrFromSlice(r.AAAA); ok && b == a {
				return true
			}
		}
	}
	return false
}

// srv adds an SRV record per instance (priority 1, Consul's weight for
// its status) and the targets' addresses in the additional section.
func (b *Backend) srv(m *dns.Msg, qq dns.Question, ins []instance, n Name, dc string, ttl uint32) {
	suffix := b.cfg.Domain
	if dc != "" {
		suffix = dc + "." + suffix
	}
	for i := range ins {
		in := &ins[i]
		if !b.eligible(in, n.Tag) {
			continue
		}
		target := in.node + ".node." + suffix
		if in.own {
			a := in.v4
			if !a.IsValid() {
				a = in.v6
			}
			target = hexAddr(a) + ".addr." + suffix
		}
		m.Answer = append(m.Answer, &dns.SRV{
			Hdr:      dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
			Priority: 1, Weight: in.weight, Port: in.port, Target: target,
		})
		if hasOwner(m.Extra, target) {
			continue
		}
		for _, a := range [2]netip.Addr{in.v4, in.v6} {
			if a.IsValid() {
				m.Extra = append(m.Extra, addrRR(target, a, ttl))
			}
		}
	}
}

// hasOwner reports whether rrs holds a record owned by name.
func hasOwner(rrs []dns.RR, name string) bool {
	for _, rr := range rrs {
		if rr.Header().Name == name {
			return true
		}
	}
	return false
}

// addRR adds a's record to m's answer when it is of the question's type
// (A or AAAA; ANY takes both).
func addRR(m *dns.Msg, qq dns.Question, a netip.Addr, ttl uint32) {
	if !a.IsValid() {
		return
	}
	switch {
	case qq.Qtype == dns.TypeANY, a.Is4() && qq.Qtype == dns.TypeA, a.Is6() && qq.Qtype == dns.TypeAAAA:
		m.Answer = append(m.Answer, addrRR(qq.Name, a, ttl))
	}
}

func addrRR(owner string, a netip.Addr, ttl uint32) dns.RR {
	if a.Is4() {
		return &dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: a.AsSlice()}
	}
	return &dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: a.AsSlice()}
}

// negative makes m a negative answer with rcode and the domain's SOA,
// whose TTL and MINIMUM are 0: a health view must not be cached as
// absent.
func (b *Backend) negative(m *dns.Msg, rcode int) reply {
	m.Rcode = rcode
	d := b.cfg.Domain
	m.Ns = append(m.Ns, &dns.SOA{
		Hdr: dns.RR_Header{Name: d, Rrtype: dns.TypeSOA, Class: dns.ClassINET},
		Ns:  "ns." + d, Mbox: "hostmaster." + d,
		Serial: uint32(b.clock.Now().Unix()), Refresh: 3600, Retry: 600, Expire: 86400,
	})
	return reply{Msg: m}
}

// stale marks r stale when the view's age passed StaleAfter: an OPT
// with EDE 3 when the query has EDNS (the listener keeps EDE options of
// the handler's OPT and makes the rest its own).
func (b *Backend) stale(r reply, age time.Duration) reply {
	if age <= b.cfg.StaleAfter {
		return r
	}
	b.stats.stale.Add(1)
	r.stale = true
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(dns.DefaultMsgSize)
	opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer, ExtraText: staleText})
	r.Extra = append(r.Extra, opt)
	return r
}

// shuffle puts the answer records in random order, so that clients that
// take the first spread over the instances.
func shuffle(m *dns.Msg) {
	rand.Shuffle(len(m.Answer), func(i, j int) { m.Answer[i], m.Answer[j] = m.Answer[j], m.Answer[i] })
}

// fit cuts m to size bytes (0: no limit), counting the OPT the listener
// adds when q has EDNS: additional records go first (but an OPT), then
// answer records from the end; TC is set when an answer record went
// (RFC 2181 §9). What is left is a true subset, shuffled, as Consul's
// own DNS sends.
func fit(m *dns.Msg, q *dns.Msg, size int) {
	if size <= 0 {
		return
	}
	reserve := 0
	if q.IsEdns0() != nil && !hasOPT(m) {
		reserve = 11 // the OPT record with no options
	}
	limit := size - reserve
	if m.Len() <= limit {
		return
	}
	for i := len(m.Extra) - 1; i >= 0 && m.Len() > limit; i-- {
		if m.Extra[i].Header().Rrtype == dns.TypeOPT {
			continue
		}
		m.Extra = append(m.Extra[:i:i], m.Extra[i+1:]...)
	}
	for len(m.Answer) > 0 && m.Len() > limit {
		m.Answer = m.Answer[:len(m.Answer)-1]
		m.Truncated = true
	}
}

func hasOPT(m *dns.Msg) bool {
	for _, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			return true
		}
	}
	return false
}
