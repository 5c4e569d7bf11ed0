package cache

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestKeyTags: queries that carry different tags upstream, or tags and a
// route that spell the same bytes, never share a cache entry; the same
// tags do.
func TestKeyTags(t *testing.T) {
	t.Parallel()
	key := func(tags []string, route string) string {
		m := new(dns.Msg)
		m.SetQuestion("example.org.", dns.TypeA)
		var name [maxWireName]byte
		k, _, ok := appendKey(nil, name[:], &pipeline.Request{Msg: m, Tags: tags, Route: route})
		if !ok {
			t.Fatal("no key")
		}
		return string(k)
	}
	cases := []struct {
		name       string
		aTags      []string
		aRoute     string
		bTags      []string
		bRoute     string
		wantShared bool
	}{
		{"same tags", []string{"env=prod"}, "", []string{"env=prod"}, "", true},
		{"no tags", nil, "", nil, "", true},
		{"tags against none", []string{"env=prod"}, "", nil, "", false},
		{"different value", []string{"env=prod"}, "", []string{"env=dev"}, "", false},
		{"split differently", []string{"a=b", "c=d"}, "", []string{"a=b,c=d"}, "", false},
		{"tag bytes against a route", []string{"a=b"}, "", nil, "\x00\x01\x00\x03a=b", false},
		{"tags and route", []string{"env=prod"}, "canary", []string{"env=prod"}, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := key(tc.aTags, tc.aRoute), key(tc.bTags, tc.bRoute)
			if (a == b) != tc.wantShared {
				t.Errorf("keys %q and %q: shared %v, want %v", a, b, a == b, tc.wantShared)
			}
		})
	}
}
