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
	// winner is the first rule the connection's values alone make
	// match (a rule that constrains none of a query's own values), -1
	// for none. groups are the mask groups before it that constrain a
	// query's own values and that the connection's values do not rule
	// out: the only rules a query of the connection may match instead.
	// many is set when there are more than maxConnGroups of them; a
	// decision then asks the matcher's memo.
	winner int
	groups []int32
	many   bool
	// needs has, for each of groups, the query's own dimensions the
	// group's rules constrain.
	needs []uint16
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
	c := &Conn{p: p, source: source, clientID: clientID, listener: listener, winner: -1}
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
	for gi := range m.groups {
		g := &m.groups[gi]
		if g.need&q.wild != 0 {
			continue // the connection's values rule the group out
		}
		if g.need&^q.looked == 0 {
			// Only the connection's dimensions, all named.
			if r := q.firstIn(m, g); r >= 0 {
				c.winner = r
				break
			}
			continue
		}
		if len(c.groups) == maxConnGroups {
			c.groups, c.needs, c.many = nil, nil, true
			break
		}
		c.groups = append(c.groups, int32(gi))
		c.needs = append(c.needs, g.need&^q.looked)
	}
	return c
}

// maxConnGroups bounds the mask groups a query of a connection walks
// before its lookups of its own values (see Conn.first); a connection
// with more asks the matcher's memo.
const maxConnGroups = 16

// first returns the priority index of the first rule matching in, a
// query of c's connection, -1 for none. A query may enter one of c's
// groups only if some rule names its value on each of the query's own
// dimensions the group has: first finds the first such group looking
// up each of those values at most once, cheapest first, and whether
// each is named, no more, which most queries (those no rule of the
// groups is about) need; from that group on, walk decides. A query
// entering none gets c's winner.
func (c *Conn) first(in *Input) int {
	m := c.p.m
	if c.many {
		return m.first(in, &c.pre)
	}
	var looked, named uint16 // the query's own dimensions
	for k, need := range c.needs {
		if miss := need &^ looked; miss != 0 {
			l, n := m.lookAt(in, miss)
			looked |= l
			named |= n
		}
		if need&^named == 0 {
			return c.walk(in, k)
		}
	}
	return c.winner
}

// walk is first from c's group k on, with the matcher's lookups: it
// walks c's groups, looking up the query's values each needs, cheapest
// first and each at most once; a group whose every dimension the query's
// values are named on goes to the matcher (its memo, else its walk),
// which the lookups made so far spare.
func (c *Conn) walk(in *Input, k int) int {
	m := c.p.m
	var q lookups
	q.looked, q.wild, q.sets = c.pre.looked, c.pre.wild, c.pre.sets
	for _, gi := range c.groups[k:] {
		g := &m.groups[gi]
		if g.need&q.wild != 0 {
			continue
		}
		if g.need&^q.looked != 0 && !q.namedAll(m, in, g) {
			continue
		}
		return m.decide(&q, in)
	}
	return c.winner
}

// Policy returns the policy c belongs to.
func (c *Conn) Policy() *Policy { return c.p }

// Match is Policy.Match for a query over c's connection: the caller
// fills in with the query's own values (QName, QType, Tags, ECS), and
// Match takes its Source, ClientID and Listener to be c's (it may set
// them).
func (c *Conn) Match(in *Input) (d *Decision, group string) {
	p := c.p
	i := c.first(in)
	if i < 0 {
		return nil, ""
	}
	r := p.rules[i]
	s := r.split
	if s == nil {
		return &r.decision, r.decision.Group
	}
	if e := c.split.Load(); e != nil && e.rule == i && (p.sticky != StickyECS || !in.ECS.IsValid() || s.mode == splitWhitelist) {
		return &r.decision, e.group
	}
	// The decision looked up none of them (see Conn); the split reads
	// them.
	in.Source, in.ClientID, in.Listener = c.source, c.clientID, c.listener
	g := s.group(in, p.sticky)
	if s.mode != splitWhitelist && p.sticky == StickyECS && in.ECS.IsValid() {
		return &r.decision, g // sticks by the query's ECS
	}
	c.split.Store(&connSplit{rule: i, group: g})
	return &r.decision, g
}
