package policy

import (
	"net/netip"
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
