package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestWriteDNSSEC: the validation section divides dnsedge's CPU per query
// by unbound's, for misses and for hits, and says why when a side did not
// run.
func TestWriteDNSSEC(t *testing.T) {
	t.Parallel()
	ok := func(sc, server, qps, cpu string) result {
		return result{scenario: sc, server: server, status: "ok", qps: qps, cpu: cpu}
	}
	tests := []struct {
		name  string
		rows  []result
		want  []string
		empty bool
	}{
		{"all ran", []result{
			ok("dnssec-miss-udp-max", "dnsedge-validate", "20000", "40.0"),
			ok("dnssec-miss-udp-max", "unbound-validate", "18000", "50.0"),
			ok("dnssec-hit-udp-max", "dnsedge-validate", "90000", "10.5"),
			ok("dnssec-hit-udp-max", "unbound-validate", "95000", "10.0"),
		}, []string{
			"| validated cache miss, UDP, maximum rate: dnsedge vs unbound | 20000 | 40.0 | unbound-validate | 50.0 | 0.80 | CPU ratio ≤ 1.00 |",
			"| validated cache hit, UDP, maximum rate: dnsedge vs unbound | 90000 | 10.5 | unbound-validate | 10.0 | 1.05 | - |",
		}, false},
		{"dnsedge does not validate", []result{
			{scenario: "dnssec-miss-udp-max", server: "dnsedge-validate", status: "configuration rejected: unknown key"},
			ok("dnssec-miss-udp-max", "unbound-validate", "18000", "50.0"),
		}, []string{"| configuration rejected: unknown key | CPU ratio ≤ 1.00 |"}, false},
		{"nothing ran", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			byKey := map[string][]result{}
			for _, r := range tt.rows {
				byKey[r.scenario] = append(byKey[r.scenario], r)
			}
			var b strings.Builder
			writeDNSSEC(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, byKey)
			if tt.empty != (b.Len() == 0) {
				t.Fatalf("section written: %v, want %v:\n%s", b.Len() > 0, !tt.empty, b.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("section lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
