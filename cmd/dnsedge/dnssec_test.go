package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/internal/signedzones"
)

// TestDNSSECE2EKdig runs the binary validating the signed tree of
// internal/signedzones (served by named) and asks it with kdig over UDP
// and TCP: AD on a secure answer to +dnssec, SERVFAIL with the EDE on each
// bogus one, and with +cdflag the unvalidated answer with CD copied. It
// needs the validator and the dnssec middleware (issue 13): without them
// "dnsedge serve" rejects the dnssec section and the test fails at start.
func TestDNSSECE2EKdig(t *testing.T) {
	kdig := tool(t, "kdig")
	z, named := signedzones.Start(t)
	anchors, _ := json.Marshal(z.Anchors)
	p := startServe(t, writeFile(t, "dnsedge.yaml", serveConfig(named.Addr)+fmt.Sprintf(`dnssec:
  validate: true
  trust_anchors: %s
`, anchors)))
	tests := []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"secure", []string{"+dnssec", "www.nsec3.test", "A"}, []string{"status: NOERROR", "Flags: qr rd ra ad;", "RRSIG"}, nil},
		// kdig sets AD in its queries unless told not to; an AD query
		// without DO gets AD back (RFC 6840 §5.8), a plain one does not.
		{"secure without DO", []string{"+noadflag", "www.nsec3.test", "A"}, []string{"status: NOERROR", "Flags: qr rd ra;"}, []string{"RRSIG"}},
		{"secure with AD, without DO", []string{"+adflag", "www.nsec3.test", "A"}, []string{"status: NOERROR", "Flags: qr rd ra ad;"}, []string{"RRSIG"}},
		{"insecure", []string{"+dnssec", "www.insecure.test", "A"}, []string{"status: NOERROR", "Flags: qr rd ra;"}, nil},
		{"tampered", []string{"+dnssec", "www.tampered.test", "A"}, []string{"status: SERVFAIL", "EDE: 6 (DNSSEC Bogus)"}, nil},
		{"expired", []string{"+dnssec", "www.expired.test", "A"}, []string{"status: SERVFAIL", "EDE: 7 (Signature Expired)"}, nil},
		{"bad DS", []string{"+dnssec", "www.badds.test", "A"}, []string{"status: SERVFAIL", "EDE: 9 (DNSKEY Missing)"}, nil},
		{"tampered with CD", []string{"+dnssec", "+cdflag", "www.tampered.test", "A"}, []string{"status: NOERROR", "Flags: qr rd ra cd;", "192.0.2.66"}, nil},
	}
	for _, proto := range []string{"udp", "tcp"} {
		h, port := hostPort(p.addr(proto))
		base := []string{"@" + h, "-p", port, "+time=3", "+retry=0"}
		if proto == "tcp" {
			base = append(base, "+tcp")
		}
		for _, tt := range tests {
			t.Run(proto+" "+tt.name, func(t *testing.T) {
				out := dig(t, kdig, append(append([]string{}, base...), tt.args...)...)
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						t.Errorf("kdig output lacks %q:\n%s", w, out)
					}
				}
				for _, w := range tt.not {
					if strings.Contains(out, w) {
						t.Errorf("kdig output has %q:\n%s", w, out)
					}
				}
			})
		}
	}
}
