package signedzones

import (
	"testing"

	"github.com/miekg/dns"
)

// TestCasesCoverTree: every zone of the tree is asked about, and every
// case lies in a zone of the tree.
func TestCasesCoverTree(t *testing.T) {
	asked := make(map[string]int)
	for _, c := range Cases {
		asked[c.Zone()]++
		if c.Verdict == Bogus && c.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: bogus but rcode %s", c, dns.RcodeToString[c.Rcode])
		}
		if c.Verdict == Bogus && c.EDE == NoEDE {
			t.Errorf("%s: bogus without an EDE", c)
		}
	}
	for _, z := range append(tree(), zone{origin: Parent}) {
		if asked[z.origin] == 0 {
			t.Errorf("no case asks about %s", z.origin)
		}
	}
}

func TestCaseZone(t *testing.T) {
	tests := []struct{ name, zone string }{
		{"www.test.", "test."},
		{"www.nsec.test.", "nsec.test."},
		{"x.w.nsec3.test.", "nsec3.test."},
		{"nope.unsigned.optout.test.", "unsigned.optout.test."},
		{"nope.optout.test.", "optout.test."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Case{Name: tt.name}).Zone(); got != tt.zone {
				t.Errorf("Zone(%s) = %s, want %s", tt.name, got, tt.zone)
			}
		})
	}
}

// TestCheck: Check finds each kind of difference, so the oracle and the
// end-to-end tests can fail.
func TestCheck(t *testing.T) {
	secure := Case{Name: "www.test.", Type: dns.TypeA, Rcode: dns.RcodeSuccess, Verdict: Secure, EDE: NoEDE}
	bogus := Case{Name: "www.tampered.test.", Type: dns.TypeA, Rcode: dns.RcodeServerFailure, Verdict: Bogus, EDE: 6}
	msg := func(rcode int, ad bool, ede int) *dns.Msg {
		m := new(dns.Msg)
		m.Rcode, m.AuthenticatedData = rcode, ad
		o := m.SetEdns0(1232, true).IsEdns0()
		if ede != NoEDE {
			o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: uint16(ede)})
		}
		return m
	}
	tests := []struct {
		name string
		c    Case
		m    *dns.Msg
		ok   bool
	}{
		{"secure with AD", secure, msg(dns.RcodeSuccess, true, NoEDE), true},
		{"secure without AD", secure, msg(dns.RcodeSuccess, false, NoEDE), false},
		{"secure as SERVFAIL", secure, msg(dns.RcodeServerFailure, true, NoEDE), false},
		{"bogus right", bogus, msg(dns.RcodeServerFailure, false, 6), true},
		{"bogus wrong EDE", bogus, msg(dns.RcodeServerFailure, false, 7), false},
		{"bogus no EDE", bogus, msg(dns.RcodeServerFailure, false, NoEDE), false},
		{"bogus with AD", bogus, msg(dns.RcodeServerFailure, true, 6), false},
		{"bogus answered", bogus, msg(dns.RcodeSuccess, false, 6), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.c, tt.m, true, tt.c.EDE)
			if (err == nil) != tt.ok {
				t.Errorf("Check = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
