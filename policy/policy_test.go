package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// mustLoad loads a policy document or fails the test.
func mustLoad(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Load("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

// query is a compact Input for tables.
type query struct {
	src, ecs, id, name, listener string
	qtype                        uint16
	tags                         []string
}

func (q query) input() *Input {
	in := &Input{ClientID: q.id, QName: q.name, QType: q.qtype, Listener: q.listener, Tags: q.tags}
	if q.src != "" {
		in.Source = netip.MustParseAddr(q.src)
	}
	if q.ecs != "" {
		in.ECS = netip.MustParsePrefix(q.ecs)
	}
	if in.QName == "" {
		in.QName = "www.example.com."
	}
	if in.QType == 0 {
		in.QType = dns.TypeA
	}
	if in.Listener == "" {
		in.Listener = "udp"
	}
	return in
}

// TestDimensions checks each match dimension alone: what matches and what
// does not.
func TestDimensions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		match string
		q     query
		want  bool
	}{
		{name: "source in", match: "{source: [10.1.0.0/16]}", q: query{src: "10.1.2.3"}, want: true},
		{name: "source out", match: "{source: [10.1.0.0/16]}", q: query{src: "10.2.2.3"}},
		{name: "source mapped client", match: "{source: [10.1.0.0/16]}", q: query{src: "::ffff:10.1.2.3"}, want: true},
		{name: "source mapped prefix", match: "{source: ['::ffff:10.1.0.0/112']}", q: query{src: "10.1.2.3"}, want: true},
		{name: "source bare address", match: "{source: [2001:db8::1]}", q: query{src: "2001:db8::1"}, want: true},
		{name: "source bare address other", match: "{source: [2001:db8::1]}", q: query{src: "2001:db8::2"}},
		{name: "source none", match: "{source: [0.0.0.0/0]}", q: query{}},
		{name: "source one of two", match: "{source: [192.0.2.0/24, 10.0.0.0/8]}", q: query{src: "10.9.9.9"}, want: true},
		{name: "ecs within", match: "{ecs: [192.0.2.0/24]}", q: query{ecs: "192.0.2.128/25"}, want: true},
		{name: "ecs same", match: "{ecs: [192.0.2.0/24]}", q: query{ecs: "192.0.2.0/24"}, want: true},
		{name: "ecs wider than the rule", match: "{ecs: [192.0.2.0/24]}", q: query{ecs: "192.0.0.0/16"}},
		{name: "ecs absent", match: "{ecs: [0.0.0.0/0]}", q: query{src: "192.0.2.1"}},
		{name: "client id", match: "{client_id: [tenant-a, tenant-b]}", q: query{id: "tenant-b"}, want: true},
		{name: "client id other", match: "{client_id: [tenant-a]}", q: query{id: "tenant-ab"}},
		{name: "client id none", match: "{client_id: [tenant-a]}", q: query{}},
		{name: "qname prefix", match: "{qname_prefix: [api-v2.]}", q: query{name: "api-v2.example.com."}, want: true},
		{name: "qname prefix star", match: "{qname_prefix: ['api-v2.*']}", q: query{name: "api-v2.example.com."}, want: true},
		{name: "qname prefix case", match: "{qname_prefix: [API-V2.]}", q: query{name: "api-v2.example.com."}, want: true},
		{name: "qname prefix partial label", match: "{qname_prefix: [staging-]}", q: query{name: "staging-db.corp."}, want: true},
		{name: "qname prefix not at start", match: "{qname_prefix: [api-v2.]}", q: query{name: "x.api-v2.example.com."}},
		{name: "qname prefix longer than name", match: "{qname_prefix: [api-v2.example.com.x]}", q: query{name: "api-v2.example.com."}},
		{name: "qname suffix apex", match: "{qname_suffix: [example.com]}", q: query{name: "example.com."}, want: true},
		{name: "qname suffix below", match: "{qname_suffix: [Example.COM.]}", q: query{name: "a.b.example.com."}, want: true},
		{name: "qname suffix not a label", match: "{qname_suffix: [example.com]}", q: query{name: "badexample.com."}},
		{name: "qname suffix root", match: "{qname_suffix: [.]}", q: query{name: "anything."}, want: true},
		{name: "qname suffix deep", match: "{qname_suffix: [a.b.example.com]}", q: query{name: "x.a.b.example.com."}, want: true},
		{name: "qname suffix above a deep one", match: "{qname_suffix: [a.b.example.com]}", q: query{name: "b.example.com."}},
		{name: "qname suffix beside a deep one", match: "{qname_suffix: [a.b.example.com]}", q: query{name: "a.c.example.com."}},
		{name: "qtype", match: "{qtype: [AAAA, https]}", q: query{qtype: dns.TypeHTTPS}, want: true},
		{name: "qtype other", match: "{qtype: [AAAA]}", q: query{qtype: dns.TypeA}},
		{name: "qtype by number", match: "{qtype: [TYPE65]}", q: query{qtype: 65}, want: true},
		{name: "listener", match: "{listener: [doh, dot]}", q: query{listener: "dot"}, want: true},
		{name: "listener other", match: "{listener: [doh]}", q: query{listener: "udp"}},
		{name: "tags", match: "{tags: [env=prod]}", q: query{tags: []string{"a", "env=prod"}}, want: true},
		{name: "tags other", match: "{tags: [env=prod]}", q: query{tags: []string{"env=dev"}}},
		{name: "tags none", match: "{tags: [env=prod]}", q: query{}},
		{name: "all dimensions", q: query{src: "10.1.2.3", ecs: "192.0.2.0/24", id: "a", name: "api.example.com.", qtype: dns.TypeAAAA, listener: "doh", tags: []string{"t"}},
			match: "{source: [10.0.0.0/8], ecs: [192.0.2.0/23], client_id: [a], qname_prefix: [api.], qname_suffix: [example.com], qtype: [AAAA], listener: [doh], tags: [t]}", want: true},
		{name: "all dimensions but one", q: query{src: "10.1.2.3", ecs: "192.0.2.0/24", id: "a", name: "api.example.com.", qtype: dns.TypeAAAA, listener: "doh", tags: []string{"t"}},
			match: "{source: [10.0.0.0/8], ecs: [192.0.2.0/23], client_id: [a], qname_prefix: [api.], qname_suffix: [example.com], qtype: [AAAA], listener: [doh], tags: [u]}"},
		{name: "empty match", match: "{}", q: query{}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := mustLoad(t, "version: v1\nrules:\n  - name: r\n    match: "+tt.match+"\n    route: g\n")
			d := p.Decide(tt.q.input())
			if d.Matched != tt.want {
				t.Fatalf("Matched = %v, want %v (%+v)", d.Matched, tt.want, d)
			}
			if tt.want && (d.Rule != "r" || d.Group != "g") {
				t.Errorf("decision = %+v, want rule r, group g", d)
			}
		})
	}
}

// priorityPolicy has rules in the reverse of their priority, and some of
// equal priority, to show the order in the file only breaks ties.
const priorityPolicy = `
version: v1
rules:
  - {name: catch-all, route: all}
  - {name: prefix-only, match: {qname_prefix: [api-v2.]}, route: prefix}
  - {name: source-only, match: {source: [10.0.0.0/8]}, route: source}
  - {name: prefix-source, match: {qname_prefix: [pay.], source: [10.0.0.0/8]}, route: pay}
  - {name: prefix-source-2, match: {qname_prefix: [api-v2.], source: [10.0.0.0/8]}, route: prefix-source}
  - {name: source-id, match: {source: [10.0.0.0/8], client_id: [tenant-a]}, route: vip}
  - {name: source-id-later, match: {source: [10.1.0.0/16], client_id: [tenant-a]}, route: vip-later}
  - {name: source-ecs-suffix, match: {source: [10.0.0.0/8], ecs: [192.0.2.0/24], qname_suffix: [example.com]}, route: three}
`

// TestPriority checks the seed's order: source and client id over qname
// prefix and source, over one dimension, over none; ties by file order;
// more dimensions over fewer.
func TestPriority(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, priorityPolicy)
	tests := []struct {
		name string
		q    query
		rule string
	}{
		{name: "source and client id first", q: query{src: "10.1.2.3", id: "tenant-a", name: "api-v2.example.com."}, rule: "source-id"},
		{name: "tie by order in the file", q: query{src: "10.1.2.3", id: "tenant-a", name: "x.example.net."}, rule: "source-id"},
		{name: "prefix and source", q: query{src: "10.1.2.3", id: "tenant-b", name: "api-v2.example.com."}, rule: "prefix-source-2"},
		{name: "prefix alone", q: query{src: "192.0.2.1", name: "api-v2.example.com."}, rule: "prefix-only"},
		{name: "source alone", q: query{src: "10.1.2.3", name: "www.example.net."}, rule: "source-only"},
		{name: "three dimensions over two", q: query{src: "10.1.2.3", id: "tenant-a", ecs: "192.0.2.0/24", name: "api-v2.example.com."}, rule: "source-ecs-suffix"},
		{name: "catch-all last", q: query{src: "192.0.2.1", name: "www.example.net."}, rule: "catch-all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if d := p.Decide(tt.q.input()); d.Rule != tt.rule {
				t.Errorf("rule = %q, want %q", d.Rule, tt.rule)
			}
		})
	}
}

// TestActions checks what a matching rule hands back.
func TestActions(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, `
version: "2026-12-06.1"
rules:
  - name: block
    match: {qname_suffix: [ads.example]}
    answer: {rcode: NXDOMAIN}
  - name: refuse
    match: {qname_suffix: [refused.example]}
    answer: {rcode: refused}
  - name: nodata
    match: {qname_suffix: [nodata.example]}
    answer: {rcode: NODATA}
  - name: fixed
    match: {qname_suffix: [fixed.example]}
    answer: {records: ["fixed.example. 60 IN A 192.0.2.1"]}
  - name: tag-and-ecs
    match: {qname_suffix: [tagged.example]}
    tags: [stage=canary, env=prod]
    ecs: {mode: add, v4_bits: 20}
    route: canary
    allow_any: true
  - name: replace
    match: {qname_suffix: [replace.example]}
    ecs: {mode: replace, prefix: 198.51.100.7/24}
  - name: strip
    match: {qname_suffix: [strip.example]}
    ecs: {mode: strip}
`)
	if p.Version() != "2026-12-06.1" || p.Len() != 7 {
		t.Fatalf("Version, Len = %q, %d", p.Version(), p.Len())
	}
	if got := strings.Join(p.Groups(), ","); got != "canary" {
		t.Errorf("Groups = %s, want canary", got)
	}
	d := p.Decide(query{name: "x.ads.example."}.input())
	if d.Answer == nil || d.Answer.Rcode != dns.RcodeNameError || len(d.Answer.Records) != 0 {
		t.Errorf("block: answer = %+v", d.Answer)
	}
	if d = p.Decide(query{name: "refused.example."}.input()); d.Answer == nil || d.Answer.Rcode != dns.RcodeRefused {
		t.Errorf("refuse: answer = %+v", d.Answer)
	}
	if d = p.Decide(query{name: "nodata.example."}.input()); d.Answer == nil || d.Answer.Rcode != dns.RcodeSuccess || d.Answer.Records != nil {
		t.Errorf("nodata: answer = %+v", d.Answer)
	}
	d = p.Decide(query{name: "fixed.example."}.input())
	if d.Answer == nil || len(d.Answer.Records) != 1 || d.Answer.Records[0].String() != "fixed.example.\t60\tIN\tA\t192.0.2.1" {
		t.Errorf("fixed: answer = %+v", d.Answer)
	}
	d = p.Decide(query{name: "tagged.example."}.input())
	want := ECSDecision{Mode: ECSAdd, V4Bits: 20, V6Bits: 56}
	if d.Group != "canary" || strings.Join(d.Tags, ",") != "stage=canary,env=prod" || d.ECS != want || !d.AllowANY || d.Answer != nil {
		t.Errorf("tag-and-ecs: %+v", d)
	}
	d = p.Decide(query{name: "replace.example."}.input())
	if want := (ECSDecision{Mode: ECSReplace, V4Bits: 24, V6Bits: 56, Prefix: netip.MustParsePrefix("198.51.100.0/24")}); d.ECS != want {
		t.Errorf("replace: ECS = %+v, want %+v", d.ECS, want)
	}
	if d = p.Decide(query{name: "strip.example."}.input()); d.ECS != (ECSDecision{Mode: ECSStrip}) {
		t.Errorf("strip: ECS = %+v", d.ECS)
	}
	if d = p.Decide(query{name: "other.example."}.input()); d.Matched || d.Rule != "" || d.Group != "" {
		t.Errorf("no rule: %+v", d)
	}
}

// TestEmptyPolicy checks that no rules decide nothing.
func TestEmptyPolicy(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{"", "version: v1\n", "rules: []\n"} {
		p := mustLoad(t, doc)
		if d := p.Decide(query{src: "192.0.2.1"}.input()); d.Matched {
			t.Errorf("%q: decision %+v", doc, d)
		}
		if p.Len() != 0 || p.Shadowed() != nil {
			t.Errorf("%q: Len %d, Shadowed %v", doc, p.Len(), p.Shadowed())
		}
	}
	var zero Policy
	if d := zero.Decide(query{}.input()); d.Matched {
		t.Errorf("zero Policy: %+v", d)
	}
}

// TestNestedValues checks that a query whose most specific value belongs
// to a rule that fails on another dimension still matches the rule of a
// less specific value: each value's set includes the rules of the values
// containing it.
func TestNestedValues(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, `
version: v1
rules:
  - {name: src-wide, match: {source: [10.0.0.0/8]}, route: a}
  - {name: src-narrow, match: {source: [10.1.0.0/16], client_id: [x]}, route: b}
  - {name: ecs-wide, match: {ecs: [192.0.0.0/16]}, route: a}
  - {name: ecs-narrow, match: {ecs: [192.0.2.0/24], listener: [doh]}, route: b}
  - {name: suffix-wide, match: {qname_suffix: [example.com]}, route: a}
  - {name: suffix-narrow, match: {qname_suffix: [x.example.com], qtype: [MX]}, route: b}
  - {name: prefix-short, match: {qname_prefix: [api]}, route: a}
  - {name: prefix-long, match: {qname_prefix: [api-v2.], tags: [t]}, route: b}
`)
	tests := []struct {
		name string
		q    query
		rule string
	}{
		{name: "source", q: query{src: "10.1.2.3", id: "y"}, rule: "src-wide"},
		{name: "source narrow", q: query{src: "10.1.2.3", id: "x"}, rule: "src-narrow"},
		{name: "ecs", q: query{src: "192.0.2.1", ecs: "192.0.2.0/24"}, rule: "ecs-wide"},
		{name: "ecs narrow", q: query{ecs: "192.0.2.0/24", listener: "doh"}, rule: "ecs-narrow"},
		{name: "suffix", q: query{name: "a.x.example.com."}, rule: "suffix-wide"},
		{name: "suffix narrow", q: query{name: "a.x.example.com.", qtype: 15}, rule: "suffix-narrow"},
		{name: "prefix", q: query{name: "api-v2.example.org."}, rule: "prefix-short"},
		{name: "prefix long", q: query{name: "api-v2.example.org.", tags: []string{"t"}}, rule: "prefix-long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if d := p.Decide(tt.q.input()); d.Rule != tt.rule {
				t.Errorf("rule = %q, want %q", d.Rule, tt.rule)
			}
		})
	}
}

func TestUsesECS(t *testing.T) {
	for _, c := range []struct {
		doc  string
		want bool
	}{
		{"version: \"1\"\nrules:\n  - {name: a, match: {qtype: [A]}, route: g}\n", false},
		{"version: \"1\"\nrules:\n  - {name: a, match: {ecs: [192.0.2.0/24]}, route: g}\n", true},
		{"version: \"1\"\nsticky: ecs\nrules:\n  - {name: a, match: {qtype: [A]}, split: {percent: 5, canary: c, base: g}}\n", true},
	} {
		p, err := Load("p.yaml", []byte(c.doc))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.UsesECS(); got != c.want {
			t.Errorf("%q: UsesECS %v, want %v", c.doc, got, c.want)
		}
	}
}
