package consul

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/internal/yamlcheck"
	"github.com/dnsedge/dnsedge/policy"
)

const testRoute = `sticky: client_id
rules:
  - name: api
    match: {qname_suffix: [api.example]}
  - name: vip
    match: {source: [10.1.0.0/16]}
    route: canary
`

const testWeight = `splits:
  api: {percent: 30, canary: canary, base: default}
`

func TestLoadVersion(t *testing.T) {
	tests := []struct {
		name          string
		route, weight string
		noWeight      bool
		wantErr       []string // substrings of the error; none: valid
	}{
		{name: "valid yaml", route: testRoute, weight: testWeight},
		{name: "valid json", route: `{"rules":[{"name":"api","match":{"qname_suffix":["api.example"]}}]}`,
			weight: `{"splits":{"api":{"weights":{"default":1,"canary":3},"seed":"s"}}}`},
		{name: "no weight key", route: "rules:\n  - {name: a, route: canary}\n", noWeight: true},
		{name: "split error at the weight key", route: testRoute, weight: "splits:\n  api:\n    percent: 300\n    canary: canary\n    base: default\n",
			wantErr: []string{"gray/strategy/v3/weight:3:14: splits.api.percent"}},
		{name: "unknown field at route", route: "rules:\n  - name: api\n    mach: {}\n    route: x\n", noWeight: true,
			wantErr: []string{"gray/strategy/v3/route:3:5", "mach"}},
		{name: "split for no rule", route: testRoute, weight: "splits:\n  nope: {percent: 1, canary: a, base: b}\n",
			wantErr: []string{"gray/strategy/v3/weight:2:9: splits.nope", `no rule named "nope"`}},
		{name: "rule error at route", route: "rules:\n  - name: a\n    match: {source: [not-a-net]}\n    route: x\n", noWeight: true,
			wantErr: []string{"gray/strategy/v3/route:3:22: rules[0].match.source[0]"}},
		{name: "other version named", route: "version: v9\nrules: []\n", noWeight: true,
			wantErr: []string{"gray/strategy/v3/route:1:10: version", `"v9" differs`}},
		{name: "not yaml", route: "rules: [\n", noWeight: true, wantErr: []string{"gray/strategy/v3/route:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w []byte
			if !tt.noWeight {
				w = []byte(tt.weight)
			}
			p, err := LoadVersion("v3", "gray/strategy/v3/route", []byte(tt.route), "gray/strategy/v3/weight", w)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("error: %v", err)
				}
				if p.Version() != "v3" {
					t.Errorf("version %q", p.Version())
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestLoadVersionSplitsLikeFile: a version from KV decides as the same
// policy written as a file does, client by client.
func TestLoadVersionSplitsLikeFile(t *testing.T) {
	kv, err := LoadVersion("v3", "r", []byte(testRoute), "w", []byte(testWeight))
	if err != nil {
		t.Fatal(err)
	}
	file, err := policy.Load("f", []byte("version: v3\n"+strings.Replace(testRoute, "match: {qname_suffix: [api.example]}",
		"match: {qname_suffix: [api.example]}\n    split: {percent: 30, canary: canary, base: default}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	canary := 0
	for i := range 1000 {
		in := policy.Input{Source: netip.MustParseAddr("192.0.2.1"), ClientID: "client-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), QName: "www.api.example.", QType: 1}
		a, b := kv.Decide(&in), file.Decide(&in)
		if a.Group != b.Group || a.Rule != b.Rule {
			t.Fatalf("client %s: kv %s/%s, file %s/%s", in.ClientID, a.Rule, a.Group, b.Rule, b.Group)
		}
		if a.Group == "canary" {
			canary++
		}
	}
	if canary < 200 || canary > 400 {
		t.Errorf("%d of 1000 clients on the canary side of a 30%% split", canary)
	}
}

// FuzzLoadVersion: any pair of documents either loads into a policy of
// the version's name or is refused with problems placed in one of the two
// keys; never a panic.
func FuzzLoadVersion(f *testing.F) {
	f.Add([]byte(testRoute), []byte(testWeight))
	f.Add([]byte(`{"rules":[{"name":"a","route":"b"}]}`), []byte(`{"splits":{}}`))
	f.Add([]byte("rules: [\n"), []byte(""))
	f.Add([]byte("version: x\n"), []byte("splits: {a: {weights: {x: -1}}}\n"))
	f.Fuzz(func(t *testing.T, route, weight []byte) {
		p, err := LoadVersion("v", "r", route, "w", weight)
		if err != nil {
			var ye *yamlcheck.Error
			if !errors.As(err, &ye) || len(ye.Problems) == 0 {
				t.Fatalf("error of type %T: %v", err, err)
			}
			for _, pr := range ye.Problems {
				if pr.File != "r" && pr.File != "w" {
					t.Fatalf("problem not placed in a key: %+v", pr)
				}
			}
			return
		}
		if p.Version() != "v" {
			t.Fatalf("version %q", p.Version())
		}
	})
}
