package policy

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
)

// clients returns n distinct clients: client ids when ids is set, else
// source addresses spread over 10.0.0.0/8.
func clients(n int, ids bool) []*Input {
	out := make([]*Input, n)
	for i := range out {
		in := &Input{QName: "api.example.com.", QType: 1, Listener: "udp",
			Source: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}
		if ids {
			in.ClientID = fmt.Sprintf("client-%d", i)
		}
		out[i] = in
	}
	return out
}

const percentPolicy = `
version: "%s"
sticky: %s
rules:
  - name: canary-10
    match: {qname_suffix: [example.com]}
    split: {percent: %v, canary: canary, base: default}
`

// TestPercentSplit checks that a percent split lands within 2 points of
// its target over 10,000 clients, for each sticky key.
func TestPercentSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sticky  string
		ids     bool
		percent float64
	}{
		{name: "client ids 10%", sticky: "client_id", ids: true, percent: 10},
		{name: "addresses 10%", sticky: "source", percent: 10},
		{name: "client_id falls back to source", sticky: "client_id", percent: 10},
		{name: "client ids 50%", sticky: "client_id", ids: true, percent: 50},
		{name: "addresses 1%", sticky: "source", percent: 1},
		{name: "addresses 0.5%", sticky: "source", percent: 0.5},
		{name: "none", sticky: "source", percent: 0},
		{name: "all", sticky: "source", percent: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := mustLoad(t, fmt.Sprintf(percentPolicy, "v1", tt.sticky, tt.percent))
			cs := clients(10_000, tt.ids)
			canary := 0
			for _, in := range cs {
				switch g := p.Decide(in).Group; g {
				case "canary":
					canary++
				case "default":
				default:
					t.Fatalf("group %q", g)
				}
			}
			got := float64(canary) / 100
			if math.Abs(got-tt.percent) > 2 {
				t.Errorf("%.2f%% in the canary, want %v%% ± 2", got, tt.percent)
			}
		})
	}
}

// TestSplitSticky checks that every client keeps its side across 20
// recompiles of the same bytes, across a version bump, and between two
// policies compiled independently; and that a new seed deals anew.
func TestSplitSticky(t *testing.T) {
	t.Parallel()
	for _, ids := range []bool{true, false} {
		cs := clients(10_000, ids)
		doc := fmt.Sprintf(percentPolicy, "v1", "client_id", 30)
		first := mustLoad(t, doc)
		sides := make([]string, len(cs))
		for i, in := range cs {
			sides[i] = first.Decide(in).Group
		}
		check := func(what string, p *Policy) {
			t.Helper()
			for i, in := range cs {
				if g := p.Decide(in).Group; g != sides[i] {
					t.Fatalf("ids=%v, %s: client %d moved from %s to %s", ids, what, i, sides[i], g)
				}
			}
		}
		for r := range 20 {
			check(fmt.Sprintf("reload %d", r), mustLoad(t, doc))
		}
		var spec Spec
		spec.Version, spec.Sticky = "v1", "client_id"
		pc := 30.0
		spec.Rules = []RuleSpec{{Name: "canary-10", Match: MatchSpec{QNameSuffix: []string{"example.com"}},
			Split: &SplitSpec{Percent: &pc, Canary: "canary", Base: "default"}}}
		other, err := Compile(spec)
		if err != nil {
			t.Fatal(err)
		}
		check("compiled apart", other)
		check("version bump", mustLoad(t, fmt.Sprintf(percentPolicy, "v2", "client_id", 30)))

		reseeded := mustLoad(t, strings.Replace(doc, "base: default}", "base: default, seed: again}", 1))
		moved := 0
		for i, in := range cs {
			if reseeded.Decide(in).Group != sides[i] {
				moved++
			}
		}
		if moved < 1000 { // 2·0.3·0.7 = 42% of clients expected to move
			t.Errorf("ids=%v: a new seed moved only %d clients", ids, moved)
		}
	}
}

// TestSplitGoldenSides pins a few clients' sides, so that a change of the
// hash (which would move clients across a fleet upgrade) cannot go
// unnoticed.
func TestSplitGoldenSides(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, fmt.Sprintf(percentPolicy, "v1", "client_id", 50))
	var got []string
	for _, in := range clients(16, true) {
		got = append(got, p.Decide(in).Group[:1])
	}
	const want = "ddccddccdddccdcd"
	if s := strings.Join(got, ""); s != want {
		t.Errorf("sides = %s, want %s", s, want)
	}
	// By source address: IPv4 (plain and IPv4-mapped, which are the same
	// client) and IPv6.
	p = mustLoad(t, fmt.Sprintf(percentPolicy, "v1", "source", 50))
	var v4, mapped, v6 []string
	for i, in := range clients(16, false) {
		v4 = append(v4, p.Decide(in).Group[:1])
		in.Source = netip.AddrFrom16(in.Source.As16())
		mapped = append(mapped, p.Decide(in).Group[:1])
		in.Source = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		v6 = append(v6, p.Decide(in).Group[:1])
	}
	for _, c := range []struct{ name, got, want string }{
		{"ipv4", strings.Join(v4, ""), "dccddccdcdcddcdc"},
		{"ipv4-mapped", strings.Join(mapped, ""), "dccddccdcdcddcdc"},
		{"ipv6", strings.Join(v6, ""), "dcccdddcdddcdddd"},
	} {
		if c.got != c.want {
			t.Errorf("%s sides = %s, want %s", c.name, c.got, c.want)
		}
	}
}

// TestWeightSplit checks that weights divide clients in proportion and
// that the group order does not depend on the map.
func TestWeightSplit(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, `
version: v1
sticky: source
rules:
  - name: w
    split: {weights: {c: 1, a: 6, b: 3}}
`)
	if got := strings.Join(p.Groups(), ","); got != "a,b,c" {
		t.Errorf("Groups = %s", got)
	}
	n := map[string]int{}
	for _, in := range clients(10_000, false) {
		n[p.Decide(in).Group]++
	}
	for g, want := range map[string]float64{"a": 60, "b": 30, "c": 10} {
		if got := float64(n[g]) / 100; math.Abs(got-want) > 2 {
			t.Errorf("group %s has %.2f%%, want %v%% ± 2", g, got, want)
		}
	}
	again := mustLoad(t, "version: v1\nsticky: source\nrules:\n  - name: w\n    split: {weights: {a: 6, b: 3, c: 1}}\n")
	for _, in := range clients(2000, false) {
		if a, b := p.Decide(in).Group, again.Decide(in).Group; a != b {
			t.Fatalf("key order moved %v from %s to %s", in.Source, a, b)
		}
	}
}

// TestWhitelistSplit checks that listed client ids and networks go to the
// canary, and everyone else to the base.
func TestWhitelistSplit(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, `
version: v1
rules:
  - match: {qname_suffix: [example.com]}
    split: {whitelist: {client_id: [staff-1], source: [10.9.0.0/16, 2001:db8::/32]}, canary: canary, base: default}
`)
	tests := []struct {
		name string
		q    query
		want string
	}{
		{name: "listed id", q: query{id: "staff-1", src: "192.0.2.1"}, want: "canary"},
		{name: "listed network", q: query{src: "10.9.3.4"}, want: "canary"},
		{name: "listed IPv6 network", q: query{src: "2001:db8::5"}, want: "canary"},
		{name: "other id in a listed network", q: query{id: "x", src: "10.9.3.4"}, want: "canary"},
		{name: "other", q: query{id: "staff-2", src: "10.8.3.4"}, want: "default"},
		{name: "nobody", q: query{}, want: "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if d := p.Decide(tt.q.input()); d.Group != tt.want || d.Rule != "rules[0]" {
				t.Errorf("decision = %+v, want group %s", d, tt.want)
			}
		})
	}
}

// TestStickyECS checks that the ecs sticky key keeps clients behind one
// subnet together and falls back to the source address.
func TestStickyECS(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, fmt.Sprintf(percentPolicy, "v1", "ecs", 50))
	ecs := netip.MustParsePrefix("198.51.100.0/24")
	var sides = map[string]int{}
	for _, in := range clients(500, true) {
		in.ECS = ecs
		sides[p.Decide(in).Group]++
	}
	if len(sides) != 1 {
		t.Errorf("clients behind one ECS subnet split: %v", sides)
	}
	sides = map[string]int{}
	for _, in := range clients(500, true) {
		sides[p.Decide(in).Group]++
	}
	if len(sides) != 2 {
		t.Errorf("without ECS the source addresses should split: %v", sides)
	}
}
