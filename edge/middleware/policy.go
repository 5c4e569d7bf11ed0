package middleware

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync/atomic"

	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/policy"
	"github.com/miekg/dns"
)

// Policy applies a compiled policy's decision to each query: the rule
// that matched and the policy's version go to req.Outcome (and so to the
// query log); a route or a split's side becomes req.Route (but the
// default group, see NewPolicy); the rule's
// tags join req.Tags; its ECS decision becomes req.ECSAction, which the
// ECS stage turns into the subnet sent upstream; allow_any lets a
// forwarded ANY through; a local answer ends the query here; a rule with
// require_tsig refuses (REFUSED) a query whose TSIG did not verify,
// setting req.TSIG to pipeline.TSIGRequired when it was unsigned.
type Policy struct {
	p       *policy.Policy
	version string
	deflt   string
	usesECS bool
	clients *[clientSlots]clientSlot
	seed    maphash.Seed
}

// clientSlots is the size of the stage's memo of clients without a
// connection memo: a sidecar, a node's resolver or a DoH endpoint behind a
// proxy sees a handful of clients, a public listener many, for whom the
// memo costs a hash and a store and saves nothing.
const (
	clientBits  = 8
	clientSlots = 1 << clientBits
)

// clientSlot holds the policy's view of the last client seen twice in a
// row of its misses (pc), and the hash of the last one that missed
// (seen): a client gets a view at its second query, so that a stream of
// clients each seen once makes none.
type clientSlot struct {
	seen atomic.Uint64
	pc   atomic.Pointer[policyConn]
}

// NewPolicy returns the stage applying p. A route to defaultGroup, the
// group every query goes to unless routed, leaves req.Route empty: it is
// the same group, and its answers share one cache partition with the
// unrouted queries' instead of being cached twice.
func NewPolicy(p *policy.Policy, defaultGroup string) *Policy {
	// The policy's own string for the default group: a decision's group
	// compares equal to it at the first byte's address.
	return &Policy{p: p, version: p.Version(), deflt: p.Group(defaultGroup), usesECS: p.UsesECS(),
		clients: new([clientSlots]clientSlot), seed: maphash.MakeSeed()}
}

// Middleware decides before next.
func (s *Policy) Middleware(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if m := s.apply(req); m != nil {
			return m, nil
		}
		return next.ServeDNS(ctx, req)
	})
}

// apply decides req and applies the decision to it; it returns the
// answer when the policy answers the query itself, nil to go on. It is
// kept out of the closure that calls the next stage, so that its frame
// and those of the decision are off the stack while the rest of the
// chain runs: the chain's stages nest, and every byte a stage keeps on
// the stack makes a query's goroutine grow its stack sooner.
//
//go:noinline
func (s *Policy) apply(req *pipeline.Request) *dns.Msg {
	req.Outcome.Policy = s.version
	var (
		in    policy.Input // filled field by field: a literal is built, then copied
		d     *policy.Decision
		group string
	)
	if qs := req.Msg.Question; len(qs) > 0 {
		in.QName, in.QType = qs[0].Name, qs[0].Qtype
	}
	in.Tags = req.Tags
	if s.usesECS {
		in.ECS = clientSubnet(req.Msg)
	}
	if req.Conn != nil {
		// The policy's view of the connection, made at its first query
		// and kept in its memo; made again for a query whose client,
		// client id or listener kind is not the one it was made from,
		// or after a reload.
		if pc, _ := req.Conn.Policy().(*policyConn); pc.from(s.p, req) {
			d, group = pc.c.Match(&in)
		} else {
			c := s.bind(req)
			req.Conn.SetPolicy(c)
			d, group = c.c.Match(&in)
		}
	} else if c := s.client(req); c != nil {
		d, group = c.Match(&in)
	} else {
		in.Source, in.ClientID, in.Listener = req.Client.Addr().Unmap().WithZone(""), req.ClientID, req.Listener.String()
		d, group = s.p.Match(&in)
	}
	if d == nil {
		return nil
	}
	req.Outcome.Rule = d.Rule
	if d.RequireTSIG && req.TSIG != pipeline.TSIGVerified {
		if req.TSIG == pipeline.TSIGNone {
			req.TSIG = pipeline.TSIGRequired
		}
		req.Outcome.Source = pipeline.SourcePolicy
		m := new(dns.Msg)
		m.SetRcode(req.Msg, dns.RcodeRefused)
		return m
	}
	if group != "" && group != s.deflt {
		req.Route = group
	}
	if len(d.Tags) > 0 {
		// d.Tags belongs to the policy: never append into it, and
		// never into a slice another stage may share.
		tags := make([]string, 0, len(req.Tags)+len(d.Tags))
		req.Tags = append(append(tags, req.Tags...), d.Tags...)
	}
	if d.ECS.Mode != "" {
		req.ECSAction = ecsAction(d.ECS)
	}
	req.AllowANY = d.AllowANY
	if d.Answer != nil {
		req.Outcome.Source = pipeline.SourcePolicy
		return localAnswer(req, d.Answer)
	}
	return nil
}

// policyConn is what the stage keeps in a connection's memo, and in its
// memo of clients: the policy's view of the connection or client (see
// policy.Conn) and the request fields it was made from, as the listener
// gave them.
type policyConn struct {
	p        *policy.Policy
	c        *policy.Conn
	addr     netip.Addr
	clientID string
	kind     pipeline.Kind
}

// from reports whether pc was made by p from req's client, client id and
// listener kind.
func (pc *policyConn) from(p *policy.Policy, req *pipeline.Request) bool {
	return pc != nil && pc.p == p && pc.addr == req.Client.Addr() && pc.kind == req.Listener && pc.clientID == req.ClientID
}

// bind makes the policy's view of req's connection or client.
func (s *Policy) bind(req *pipeline.Request) *policyConn {
	addr := req.Client.Addr()
	c := s.p.Conn(addr.Unmap().WithZone(""), req.ClientID, req.Listener.String())
	return &policyConn{p: s.p, c: c, addr: addr, clientID: req.ClientID, kind: req.Listener}
}

// slot returns the slot of req's client in the memo of clients, and
// the hash of the client that picked it.
func (s *Policy) slot(req *pipeline.Request) (*clientSlot, uint64) {
	a := req.Client.Addr().As16()
	h := binary.LittleEndian.Uint64(a[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(a[8:]) ^ uint64(req.Listener)
	if req.ClientID != "" {
		h ^= maphash.String(s.seed, req.ClientID)
	}
	// MurmurHash3's finalizer: every bit of the slot depends on every
	// bit of the client (a multiply alone maps clients a few apart, as
	// the listener kinds are, to slots a fixed distance apart).
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return &s.clients[h>>(64-clientBits)], h
}

// client returns the policy's view of req's client from the memo of
// clients, nil when it has none: it makes one for a client that missed
// its slot last time too.
func (s *Policy) client(req *pipeline.Request) *policy.Conn {
	slot, h := s.slot(req)
	if pc := slot.pc.Load(); pc.from(s.p, req) {
		return pc.c
	}
	if slot.seen.Load() != h {
		slot.seen.Store(h)
		return nil
	}
	pc := s.bind(req)
	slot.pc.Store(pc)
	return pc.c
}

// ecsAction translates policy's ECS decision into the pipeline's.
func ecsAction(e policy.ECSDecision) pipeline.ECSAction {
	a := pipeline.ECSAction{V4Bits: uint8(e.V4Bits), V6Bits: uint8(e.V6Bits), Prefix: e.Prefix}
	switch e.Mode {
	case policy.ECSStrip:
		a.Mode = pipeline.ECSStrip
	case policy.ECSPass:
		a.Mode = pipeline.ECSPass
	case policy.ECSAdd:
		a.Mode = pipeline.ECSAdd
	case policy.ECSReplace:
		a.Mode = pipeline.ECSReplace
	}
	return a
}

// localAnswer builds a rule's answer to req: its rcode, and its records
// that answer the question (owner name and type, CNAMEs at the name, or
// every record for ANY) with the owner written as the client asked it.
// A NOERROR answer without such records is NODATA.
func localAnswer(req *pipeline.Request, a *policy.Answer) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req.Msg, a.Rcode)
	m.Authoritative = false
	m.RecursionAvailable = true
	q := req.Question()
	for _, rr := range a.Records {
		h := rr.Header()
		if !equalName(h.Name, q.Name) {
			continue
		}
		if q.Qtype != dns.TypeANY && h.Rrtype != q.Qtype && h.Rrtype != dns.TypeCNAME {
			continue
		}
		rr = dns.Copy(rr)
		rr.Header().Name = q.Name
		m.Answer = append(m.Answer, rr)
	}
	return m
}

func equalName(a, b string) bool { return dnsname.Lower(a) == dnsname.Lower(b) }
