package policy

import (
	"net/netip"
	"sync/atomic"
)

// Conn is a policy's view of one client connection: the lookups of the
// parts of a decision's input that are the same for every query of the
// connection (source address, client id, listener kind), made once when
// the connection's first query is decided, and the side of a split the
// client was last put on. A query over the connection is decided with
// Conn.Match, which makes only the lookups of the query's own values
// (name, type, tags, ECS). The decision is the one Policy.Match makes.
//
// A Conn belongs to the Policy that made it: after a reload the caller
// makes a new one (see Of). It is safe for concurrent use by the queries
// of its connection.
type Conn struct {
	p        *Policy
	source   netip.Addr
	clientID string
	listener string
	pre      connLookups
	// split is the split decision last made on the connection: a
	// client's side depends on nothing else of a query unless splits
	// stick by ECS and the query has an ECS option.
	split atomic.Pointer[connSplit]
}

// connLookups are the lookups of a connection's dimensions: looked has
// bit d for each dimension looked up, wild for those whose value no rule
// names, sets each one's set.
type connLookups struct {
	looked, wild uint16
	sets         signature
}

type connSplit struct {
	rule  int
	group string
}

// Conn returns p's view of a connection from source (without zone; an
// IPv4 address in its 4-byte form) with client id clientID (empty for
// none) on a listener of kind listener. It makes the connection's
// lookups.
func (p *Policy) Conn(source netip.Addr, clientID, listener string) *Conn {
	c := &Conn{p: p, source: source, clientID: clientID, listener: listener}
	m := p.m
	if m == nil || m.words == 0 {
		return c
	}
	in := Input{Source: source, ClientID: clientID, Listener: listener}
	var q lookups
	for _, d := range [...]int{dimClientID, dimSource, dimListener} {
		if m.used&(1<<d) == 0 {
			continue
		}
		s, ok := m.lookup(&q, &in, d)
		q.put(d, s, ok)
		q.looked |= 1 << d
	}
	c.pre = connLookups{looked: q.looked, wild: q.wild, sets: q.sets}
	return c
}

// Policy returns the policy c belongs to.
func (c *Conn) Policy() *Policy { return c.p }

// Input returns an Input with c's source, client id and listener kind,
// for the caller to fill with a query's own values.
func (c *Conn) Input() Input {
	return Input{Source: c.source, ClientID: c.clientID, Listener: c.listener}
}

// Match is Policy.Match for a query over c's connection. in's Source,
// ClientID and Listener must be c's (see Input); they are not looked up
// again.
func (c *Conn) Match(in *Input) (d *Decision, group string) {
	p := c.p
	i := p.m.first(in, &c.pre)
	if i < 0 {
		return nil, ""
	}
	r := p.rules[i]
	s := r.split
	if s == nil {
		return &r.decision, r.decision.Group
	}
	if s.mode != splitWhitelist && p.sticky == StickyECS && in.ECS.IsValid() {
		return &r.decision, s.group(in, p.sticky) // sticks by the query's ECS
	}
	if e := c.split.Load(); e != nil && e.rule == i {
		return &r.decision, e.group
	}
	g := s.group(in, p.sticky)
	c.split.Store(&connSplit{rule: i, group: g})
	return &r.decision, g
}
