package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// connMatch decides in over a Conn made from in's connection values.
func connMatch(c *Conn, in *Input) (string, string) {
	q := Input{QName: in.QName, QType: in.QType, Tags: in.Tags, ECS: in.ECS}
	d, g := c.Match(&q)
	if d == nil {
		return "", ""
	}
	return d.Rule, g
}

// TestConnMatchesPolicy: a decision over a connection's Conn is the one
// Policy.Match makes, for every query of the mixed benchmark policy, on
// a fresh Conn and on one that decided other queries before (its split
// memo and lookups are the connection's, never another query's).
func TestConnMatchesPolicy(t *testing.T) {
	for _, n := range []int{1, 10, 1000} {
		p, qs := mixedPolicy(t, n)
		conns := make(map[string]*Conn)
		for round := range 3 {
			for i, in := range qs {
				key := fmt.Sprint(in.Source, "|", in.ClientID, "|", in.Listener)
				c := conns[key]
				if c == nil || round == 0 {
					c = p.Conn(in.Source, in.ClientID, in.Listener)
					conns[key] = c
				}
				wd, wg := p.Match(in)
				want := [2]string{}
				if wd != nil {
					want = [2]string{wd.Rule, wg}
				}
				rule, group := connMatch(c, in)
				if got := [2]string{rule, group}; got != want {
					t.Errorf("rules=%d round %d query %d: conn decides %q, policy %q", n, round, i, got, want)
				}
			}
		}
	}
}

// TestConnQueryValues: the values of a query that may change between the
// queries of one connection (tags, ECS, name, type) are looked up for
// each query: a Conn never hands a query the decision of the one before.
func TestConnQueryValues(t *testing.T) {
	p, err := Load("p.yaml", []byte(`version: v1
sticky: ecs
rules:
  - {name: tagged, match: {tags: [team=a], source: [10.0.0.0/8]}, route: a}
  - {name: ecs-net, match: {ecs: [192.0.2.0/24], source: [10.0.0.0/8]}, route: e}
  - {name: byname, match: {qname_suffix: [n.example], qtype: [AAAA]}, route: n}
  - {name: half, match: {source: [10.0.0.0/8]}, split: {percent: 50, canary: canary, base: default}}
`))
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("10.1.2.3")
	c := p.Conn(src, "", "tcp")
	// ECS options whose sticky hash lands on each side of the split.
	var sides [2]netip.Prefix
	for i := 0; sides[0] == (netip.Prefix{}) || sides[1] == (netip.Prefix{}); i++ {
		if i > 1000 {
			t.Fatal("no ECS subnet found for both sides")
		}
		e := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, byte(i), 0}), 24)
		_, g := p.Match(&Input{Source: src, ECS: e, QName: "x.", QType: 1, Listener: "tcp"})
		if g == "canary" {
			sides[1] = e
		} else {
			sides[0] = e
		}
	}
	for i, tt := range []struct {
		tags        []string
		ecs         netip.Prefix
		name        string
		qtype       uint16
		rule, group string
	}{
		{tags: []string{"team=a"}, name: "x.", qtype: 1, rule: "tagged", group: "a"},
		{name: "x.", qtype: 1, ecs: sides[0], rule: "half", group: "default"},
		{name: "x.", qtype: 1, ecs: sides[1], rule: "half", group: "canary"},
		{name: "x.", qtype: 1, ecs: sides[0], rule: "half", group: "default"},
		{tags: []string{"team=b"}, name: "x.", qtype: 1, ecs: netip.MustParsePrefix("192.0.2.0/24"), rule: "ecs-net", group: "e"},
		{name: "www.n.example.", qtype: 28, rule: "byname", group: "n"},
		{name: "www.n.example.", qtype: 1, ecs: sides[1], rule: "half", group: "canary"},
		{tags: []string{"team=a"}, name: "www.n.example.", qtype: 28, rule: "tagged", group: "a"},
	} {
		in := &Input{Source: src, Listener: "tcp", Tags: tt.tags, ECS: tt.ecs, QName: tt.name, QType: tt.qtype}
		rule, group := connMatch(c, in)
		if rule != tt.rule || group != tt.group {
			t.Errorf("query %d: rule %q group %q, want %q %q", i, rule, group, tt.rule, tt.group)
		}
		if d, g := p.Match(in); d == nil || d.Rule != rule || g != group {
			t.Errorf("query %d: conn decides %q %q, policy %v %q", i, rule, group, d, g)
		}
	}
}

// TestConnSplitSticks: a connection's split decision is the policy's,
// for sources and client ids on both sides of a percent split, whatever
// side the connection's previous decision was on, so that a Conn does
// not move a client to the other side.
func TestConnSplitSticks(t *testing.T) {
	p, err := Load("p.yaml", []byte(`version: v1
rules:
  - {name: one, match: {qname_suffix: [one.example]}, split: {percent: 50, canary: canary, base: default}}
  - {name: two, match: {qname_suffix: [two.example]}, split: {percent: 50, canary: canary, base: default}}
  - {name: w, match: {qname_suffix: [w.example]}, split: {weights: {a: 1, b: 1, c: 1}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)})
		id := ""
		if i%3 == 0 {
			id = fmt.Sprintf("client-%d", i)
		}
		c := p.Conn(src, id, "dot")
		for _, name := range []string{"a.one.example.", "a.two.example.", "a.w.example.", "b.one.example.", "a.two.example."} {
			in := &Input{Source: src, ClientID: id, Listener: "dot", QName: name, QType: 1}
			_, want := p.Match(in)
			if _, got := connMatch(c, in); got != want {
				t.Fatalf("client %v %q, %s: conn says %q, policy %q", src, id, name, got, want)
			}
		}
	}
}

// TestConnDoesNotAllocate: after a connection's first query, deciding
// over its Conn allocates nothing.
func TestConnDoesNotAllocate(t *testing.T) {
	p, _ := mixedPolicy(t, 1000)
	in := &Input{Source: netip.MustParseAddr("127.0.0.1"), QName: "www.example.org.", QType: 1, Listener: "tcp"}
	c := p.Conn(in.Source, "", "tcp")
	q := Input{QName: in.QName, QType: in.QType}
	c.Match(&q)
	if a := testing.AllocsPerRun(1000, func() { c.Match(&q) }); a != 0 {
		t.Errorf("Conn.Match allocates %v times per call", a)
	}
}

// BenchmarkConnMatch measures a decision over a connection's Conn, the
// query path of stream listeners, against Policy.Match.
func BenchmarkConnMatch(b *testing.B) {
	p, err := Load("p.yaml", []byte(benchTail(1000)))
	if err != nil {
		b.Fatal(err)
	}
	src := netip.MustParseAddr("127.0.0.1")
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("h%d.bench.test.", i)
	}
	b.Run("policy", func(b *testing.B) {
		i := 0
		for b.Loop() {
			in := Input{Source: src, Listener: "tcp", QName: names[i%len(names)], QType: 1}
			p.Match(&in)
			i++
		}
	})
	b.Run("conn", func(b *testing.B) {
		c := p.Conn(src, "", "tcp")
		i := 0
		for b.Loop() {
			in := Input{QName: names[i%len(names)], QType: 1}
			c.Match(&in)
			i++
		}
	})
}

// benchTail is a policy of n rules in the manner of the load benchmark's:
// rules over every dimension, the last a 50 % split of 127.0.0.0/8 that
// every benchmark query matches.
func benchTail(n int) string {
	s := "version: v1\nrules:\n"
	for i := range n - 1 {
		switch i % 5 {
		case 0:
			s += fmt.Sprintf("  - {name: r%d, match: {source: [10.%d.%d.0/24]}, split: {percent: 10, canary: canary, base: default}}\n", i, i/256%256, i%256)
		case 1:
			s += fmt.Sprintf("  - {name: r%d, match: {client_id: [client-%d]}, route: canary}\n", i, i)
		case 2:
			s += fmt.Sprintf("  - {name: r%d, match: {qname_prefix: [svc-%d.]}, answer: {rcode: NXDOMAIN}}\n", i, i)
		case 3:
			s += fmt.Sprintf("  - {name: r%d, match: {qname_suffix: [zone-%d.example], qtype: [A, AAAA]}, route: canary, tags: [rule=r%d]}\n", i, i, i)
		case 4:
			s += fmt.Sprintf("  - {name: r%d, match: {source: [\"2001:db8:%x::/48\"], listener: [doh]}, route: default}\n", i, i)
		}
	}
	return s + "  - {name: loopback-half, match: {source: [127.0.0.0/8]}, split: {percent: 50, canary: canary, base: default}}\n"
}

// TestConnAgreesWithWalk: over connections drawn at random from the mixed
// policy's vocabulary, each asked many queries of its own values (name,
// type, tags, ECS) drawn the same way, a decision over the connection's
// Conn is the rule the walk over every group finds and the group
// Policy.Match gives, whether the query is decided by the connection's
// winner, its groups or the matcher's memo.
func TestConnAgreesWithWalk(t *testing.T) {
	for _, n := range []int{10, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p, _ := mixedPolicy(t, n)
			r := rand.New(rand.NewPCG(3, uint64(n)))
			var fewGroups, winners int
			for range 200 {
				ci := randomInput(r, n)
				c := p.Conn(ci.Source, ci.ClientID, ci.Listener)
				if !c.many {
					fewGroups++
				}
				if c.winner >= 0 {
					winners++
				}
				for range 30 {
					in := randomInput(r, n)
					in.Source, in.ClientID, in.Listener = ci.Source, ci.ClientID, ci.Listener
					var q lookups
					want := q.walk(p.m, in)
					if got := c.first(in); got != want {
						t.Fatalf("%+v: the connection gives rule %d, the walk %d", in, got, want)
					}
					_, wg := p.Match(in)
					if _, g := connMatch(c, in); g != wg {
						t.Fatalf("%+v: the connection gives group %q, the policy %q", in, g, wg)
					}
				}
			}
			if fewGroups == 0 || winners == 0 {
				t.Fatalf("of 200 connections %d walk their own groups and %d have a winner: the test misses a path", fewGroups, winners)
			}
		})
	}
}

// TestConnConcurrent decides a connection's queries from several
// goroutines at once, as a stream listener's workers do, so that the
// race detector sees its split memo written while read.
func TestConnConcurrent(t *testing.T) {
	p, err := Load("p.yaml", []byte(benchTail(100)))
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("127.0.0.1")
	c := p.Conn(src, "", "tcp")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				in := &Input{Source: src, Listener: "tcp", QName: fmt.Sprintf("svc-%d.zone-%d.example.", (i+g)%100, i%100), QType: 1}
				wd, wg := p.Match(in)
				d, g := c.Match(&Input{QName: in.QName, QType: in.QType})
				if d != wd || g != wg {
					t.Errorf("%+v: the connection gives %v %q, the policy %v %q", in, d, g, wd, wg)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestConnManyGroups: a connection whose queries may match rules of more
// than maxConnGroups mask groups decides through the matcher's memo, and
// agrees with the walk.
func TestConnManyGroups(t *testing.T) {
	s := "version: v1\nrules:\n"
	vals := []string{"tags: [t]", "ecs: [192.0.2.0/24]", "qname_prefix: [api.]", "qname_suffix: [example.com]", "qtype: [A]"}
	for mask := 1; mask < 1<<len(vals); mask++ {
		var parts []string
		for d, v := range vals {
			if mask&(1<<d) != 0 {
				parts = append(parts, v)
			}
		}
		s += fmt.Sprintf("  - {name: m%d, match: {%s}, route: g%d}\n", mask, strings.Join(parts, ", "), mask)
	}
	s += "  - {name: local, match: {source: [127.0.0.0/8]}, route: l}\n"
	p, err := Load("p.yaml", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("127.0.0.1")
	c := p.Conn(src, "", "tcp")
	if !c.many {
		t.Fatalf("a connection whose queries may match %d groups walks them", len(c.groups))
	}
	for i := range 64 {
		in := &Input{Source: src, Listener: "tcp", QName: "www.example.org.", QType: 28}
		if i&1 != 0 {
			in.Tags = []string{"t"}
		}
		if i&2 != 0 {
			in.ECS = netip.MustParsePrefix("192.0.2.0/24")
		}
		if i&4 != 0 {
			in.QName = "api.example.org."
		}
		if i&8 != 0 {
			in.QName = "www.example.com."
		}
		if i&16 != 0 {
			in.QType = 1
		}
		var q lookups
		want := q.walk(p.m, in)
		if got := c.first(in); got != want {
			t.Errorf("query %d: the connection gives rule %d, the walk %d", i, got, want)
		}
	}
}

// TestQNameCase: a query name matches prefixes and suffixes whatever the
// case of its ASCII letters (RFC 4343), as the caller passes it, over a
// connection and without one.
func TestQNameCase(t *testing.T) {
	p, err := Load("p.yaml", []byte(`version: v1
rules:
  - {name: api, match: {qname_prefix: ["api-"]}, route: a}
  - {name: zone, match: {qname_suffix: [Zone.Example]}, route: z}
  - {name: deep, match: {qname_suffix: [in.deep.example]}, route: d}
`))
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.1")
	c := p.Conn(src, "", "udp")
	for _, tt := range []struct{ name, rule string }{
		{"api-1.example.", "api"},
		{"API-1.example.", "api"},
		{"Api-1.Example.", "api"},
		{"www.zone.example.", "zone"},
		{"WWW.ZONE.EXAMPLE.", "zone"},
		{"zOnE.eXaMpLe.", "zone"},
		{"x.In.Deep.Example.", "deep"},
		{"x.deep.EXAMPLE.", ""},
		{"ap.example.", ""},
	} {
		in := &Input{Source: src, Listener: "udp", QName: tt.name, QType: 1}
		if got := p.Decide(in).Rule; got != tt.rule {
			t.Errorf("%s: rule %q, want %q", tt.name, got, tt.rule)
		}
		if got, _ := connMatch(c, in); got != tt.rule {
			t.Errorf("%s over a connection: rule %q, want %q", tt.name, got, tt.rule)
		}
	}
}
