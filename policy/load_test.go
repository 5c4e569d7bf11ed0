package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/internal/yamlcheck"
)

// TestLoadErrors checks that every problem of a document is reported at
// its line and column, in the configuration file's words.
func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{name: "not yaml", doc: "rules: [\n", want: []string{"p.yaml:1:1: did not find expected node content"}},
		{name: "types and unknown keys", doc: `
version: v1
stickey: source
rules:
  - name: a
    match: {source: 10.0.0.0/8, qtyp: [A]}
    route: [g]
    allow_any: maybe
`, want: []string{
			`p.yaml:3:1: unknown key "stickey" at the top level: did you mean "sticky"?`,
			`p.yaml:5:5: rules[0]: rule "a" does nothing: give it route, split, tags, ecs, answer, allow_any or require_tsig`,
			`p.yaml:6:21: rules[0].match.source: expected a list, not "10.0.0.0/8"`,
			`p.yaml:6:33: unknown key "qtyp" in rules[0].match: did you mean "qtype"?`,
			`p.yaml:7:12: rules[0].route: expected text, not a list`,
			`p.yaml:8:16: rules[0].allow_any: expected true or false, not "maybe"`,
		}},
		{name: "every check", doc: `
sticky: sideways
rules:
  - name: a
    match:
      source: [10.0.0.0/33, "fe80::1%eth0"]
      ecs: [nope]
      client_id: [""]
      qname_prefix: ["", "a*b"]
      qname_suffix: ["bad..name"]
      qtype: [BOGUS, TYPE70000]
      listener: [http]
      tags: ["has space"]
    route: g
    split: {percent: 101, canary: c}
  - name: a
    tags: [""]
  - {}
  - name: e
    ecs: {mode: sometimes, v4_bits: 40, prefix: 192.0.2.0/24}
  - name: f
    answer: {rcode: SERVFAIL, records: ["x 60 IN A 192.0.2.1", "bad record"]}
    route: g
  - name: w
    split: {weights: {only: 0}, canary: c}
  - split: {percent: 5, weights: {a: 1, b: 1}, canary: c, base: d}
  - name: wl
    split: {whitelist: {client_id: [""], source: [x]}, canary: c, base: d}
`, want: []string{
			`p.yaml: version: a policy with rules needs a version`,
			`p.yaml:2:9: sticky: "sideways" is not client_id, source or ecs`,
			`p.yaml:6:16: rules[0].match.source[0]: "10.0.0.0/33" is not a network: prefix length out of range`,
			`p.yaml:6:29: rules[0].match.source[1]: network "fe80::1%eth0" must not have a zone`,
			`p.yaml:7:13: rules[0].match.ecs[0]: "nope" is neither a CIDR nor an address`,
			`p.yaml:8:19: rules[0].match.client_id[0]: client id is empty`,
			`p.yaml:9:22: rules[0].match.qname_prefix[0]: prefix is empty`,
			`p.yaml:9:26: rules[0].match.qname_prefix[1]: "a*b": a prefix is plain text, with at most a "*" at its end`,
			`p.yaml:10:22: rules[0].match.qname_suffix[0]: "bad..name" is not a domain name`,
			`p.yaml:11:15: rules[0].match.qtype[0]: "BOGUS" is not a query type`,
			`p.yaml:11:22: rules[0].match.qtype[1]: "TYPE70000" is not a query type`,
			`p.yaml:12:18: rules[0].match.listener[0]: "http" is not a listener kind (udp, tcp, dot, doh, doq)`,
			`p.yaml:13:14: rules[0].match.tags[0]: tag "has space" has spaces`,
			`p.yaml:15:12: rules[0].split: a rule has route or split, not both`,
			`p.yaml:15:12: rules[0].split.base: the split needs a base group`,
			`p.yaml:15:22: rules[0].split.percent: 101 is not between 0 and 100`,
			`p.yaml:16:11: rules[1].name: rule "a" already defined at rules[0]`,
			`p.yaml:17:12: rules[1].tags[0]: tag is empty`,
			`p.yaml:18:5: rules[2]: rule "rules[2]" does nothing: give it route, split, tags, ecs, answer, allow_any or require_tsig`,
			`p.yaml:20:10: rules[3].ecs: v4_bits and v6_bits are for the add and replace modes`,
			`p.yaml:20:17: rules[3].ecs.mode: "sometimes" is not pass, strip, add or replace`,
			`p.yaml:20:37: rules[3].ecs.v4_bits: 40 is not between 0 and 32`,
			`p.yaml:20:49: rules[3].ecs.prefix: prefix is for the replace mode`,
			`p.yaml:22:13: rules[4].answer: a rule that answers locally has no route or split`,
			`p.yaml:22:13: rules[4].answer: an answer has rcode or records, not both`,
			`p.yaml:22:21: rules[4].answer.rcode: "SERVFAIL" is not NXDOMAIN, NODATA or REFUSED`,
			`p.yaml:22:41: rules[4].answer.records[0]: "x 60 IN A 192.0.2.1": write the owner name in full, ending with a dot`,
			`p.yaml:22:64: rules[4].answer.records[1]: dns: not a TTL: "record" at line: 1:10`,
			`p.yaml:25:12: rules[5].split: a weight split names its groups in weights, without canary or base`,
			`p.yaml:25:22: rules[5].split.weights: weights need two groups or more`,
			`p.yaml:25:29: rules[5].split.weights.only: weight 0 is not between 1 and 1000000`,
			`p.yaml:26:12: rules[6].split: a weight split names its groups in weights, without canary or base`,
			`p.yaml:26:12: rules[6].split: a split has one of percent, weights and whitelist`,
			`p.yaml:26:12: rules[6].split: a percent or weight split needs a rule name or a seed, so clients keep their side when rules are added`,
			`p.yaml:28:37: rules[7].split.whitelist.client_id[0]: client id is empty`,
			`p.yaml:28:51: rules[7].split.whitelist.source[0]: "x" is neither a CIDR nor an address`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Load("p.yaml", []byte(tt.doc))
			if p != nil || err == nil {
				t.Fatalf("Load accepted the document")
			}
			var ye *yamlcheck.Error
			if !errors.As(err, &ye) {
				t.Fatalf("error %T, want *yamlcheck.Error", err)
			}
			got := strings.Split(err.Error(), "\n")
			gotSet := map[string]bool{}
			for _, g := range got {
				gotSet[g] = true
			}
			for _, w := range tt.want {
				if !gotSet[w] {
					t.Errorf("missing %s", w)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(got), len(tt.want), err)
			}
		})
	}
}

// TestCompileErrorsAreRelative checks that Compile, for the inline
// section, reports field errors at paths relative to the section.
func TestCompileErrorsAreRelative(t *testing.T) {
	t.Parallel()
	_, err := Compile(Spec{Version: "v", Rules: []RuleSpec{{Route: "g", Match: MatchSpec{Source: []string{"x"}}}}})
	var fe *field.Error
	if !errors.As(err, &fe) || fe.Path != "rules[0].match.source[0]" {
		t.Fatalf("error %v, want a field error at rules[0].match.source[0]", err)
	}
	spec := Spec{Version: "v", Rules: []RuleSpec{{Route: "g"}}}
	if err := spec.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

// TestShadowed checks which rules are reported as never matching.
func TestShadowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rules string
		want  []string // paths of the shadowed rules
	}{
		{name: "wider network first", rules: `
  - {name: wide, match: {source: [10.0.0.0/8]}, route: a}
  - {name: narrow, match: {source: [10.1.0.0/16, 10.2.0.0/16]}, route: b}`, want: []string{"rules[1]"}},
		{name: "narrower first is fine", rules: `
  - {name: narrow, match: {source: [10.1.0.0/16]}, route: b}
  - {name: wide, match: {source: [10.0.0.0/8]}, route: a}`},
		{name: "partly outside", rules: `
  - {name: wide, match: {source: [10.0.0.0/8]}, route: a}
  - {name: narrow, match: {source: [10.1.0.0/16, 192.0.2.0/24]}, route: b}`},
		{name: "more specific combination is not shadowed", rules: `
  - {name: one, match: {source: [10.0.0.0/8]}, route: a}
  - {name: two, match: {source: [10.0.0.0/8], client_id: [x]}, route: b}`},
		{name: "same match twice", rules: `
  - {name: one, match: {client_id: [x, y], qtype: [A]}, route: a}
  - {name: two, match: {client_id: [y], qtype: [A]}, route: b}`, want: []string{"rules[1]"}},
		{name: "names", rules: `
  - {name: one, match: {qname_prefix: [api], qname_suffix: [example.com]}, route: a}
  - {name: two, match: {qname_prefix: [api-v2.], qname_suffix: [x.example.com]}, route: b}
  - {name: three, match: {qname_prefix: [ap], qname_suffix: [example.com]}, route: c}`, want: []string{"rules[1]"}},
		{name: "catch-all first in the file still goes last", rules: `
  - {name: all, route: a}
  - {name: some, match: {listener: [doh]}, route: b}`},
		{name: "two catch-alls", rules: `
  - {name: all, route: a}
  - {name: also, tags: [x]}`, want: []string{"rules[1]"}},
		{name: "tags and ecs", rules: `
  - {name: t, match: {tags: [a, b], ecs: [192.0.2.0/24]}, route: a}
  - {name: u, match: {tags: [b], ecs: [192.0.2.0/25]}, route: b}`, want: []string{"rules[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := mustLoad(t, "version: v1\nrules:"+tt.rules+"\n")
			var got []string
			for _, e := range field.Flatten(p.Shadowed()) {
				var fe *field.Error
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a field error", e)
				}
				got = append(got, fe.Path)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("shadowed = %v, want %v (%v)", got, tt.want, p.Shadowed())
			}
		})
	}
}
