package policy

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzLoad checks that Load never panics, that what it accepts decides
// without panicking, and that two loads of the same bytes decide alike.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(priorityPolicy))
	f.Add([]byte("version: v\nrules:\n  - {name: s, split: {percent: 12.5, canary: c, base: b}}\n"))
	f.Add([]byte("version: v\nrules:\n  - {name: w, split: {weights: {a: 1, b: 2}}, match: {qname_prefix: ['api*']}}\n"))
	f.Add([]byte("version: v\nrules:\n  - {split: {whitelist: {source: ['::ffff:10.0.0.0/104']}, canary: c, base: b}, match: {ecs: [::/0]}}\n"))
	f.Add([]byte("version: v\nrules:\n  - {answer: {records: ['a. 1 IN TXT x']}, match: {qname_suffix: [.], tags: [a]}, ecs: {mode: add}}\n"))
	f.Add([]byte("rules: &a [*a]\n"))
	inputs := []*Input{
		{},
		{Source: netip.MustParseAddr("10.1.2.3"), ClientID: "tenant-a", QName: "api-v2.example.com.", QType: 1, Listener: "doh", Tags: []string{"a"}},
		{Source: netip.MustParseAddr("2001:db8::1"), ECS: netip.MustParsePrefix("192.0.2.0/24"), QName: ".", QType: 255, Listener: "udp"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Load("fuzz.yaml", data)
		if err != nil {
			if p != nil {
				t.Fatal("Load returned a policy with an error")
			}
			return
		}
		q, err := Load("fuzz.yaml", data)
		if err != nil {
			t.Fatalf("second load: %v", err)
		}
		_ = p.Shadowed()
		for _, in := range inputs {
			a, b := p.Decide(in), q.Decide(in)
			if a.Rule != b.Rule || a.Group != b.Group {
				t.Fatalf("two loads decide %+v and %+v", a, b)
			}
			if a.Matched != (a.Rule != "") {
				t.Fatalf("decision %+v", a)
			}
		}
	})
}

// FuzzLookupSuffix checks the suffix lookup, label by label behind its
// filter, against the plain walk: every domain of the name from the root
// down, in lower case, looked up in the suffix map until one is missing.
func FuzzLookupSuffix(f *testing.F) {
	p, err := Load("s.yaml", []byte(`version: v
rules:
  - {name: a, match: {qname_suffix: [example.com, b.example.com, "x\\.y.z", "\\.weird"]}, route: g}
  - {name: b, match: {qname_suffix: [net, Corp.Example.Org]}, route: g}
  - {name: c, match: {qname_suffix: [.], qtype: [MX]}, route: g}
`))
	if err != nil {
		f.Fatal(err)
	}
	m := p.m
	for _, s := range []string{"", ".", "a.b.example.com.", "WWW.Example.COM", "x..y.", "a..b.", "..", "corp.example.org.", "b.example.com", "net", "\\.weird."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := m.lookupSuffix(name), plainSuffix(m, name); got != want {
			t.Fatalf("lookupSuffix(%q) = %d, the plain walk %d", name, got, want)
		}
	})
}

// plainSuffix is lookupSuffix without its filter and hashes. A name
// without its final dot is no domain of the map's (query names have it).
func plainSuffix(m *matcher, name string) int32 {
	if len(m.suffix) == 0 || name == "" {
		return -1
	}
	best := m.rootSuffix
	n := string(lowerInto(nil, name))
	for i := len(strings.TrimSuffix(n, ".")) - 1; i >= 0; i-- {
		if i > 0 && n[i-1] != '.' {
			continue
		}
		s, ok := m.suffix[n[i:]]
		if !ok {
			break
		}
		if s >= 0 {
			best = s
		}
	}
	return best
}
