package signedzones

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUnboundOracle proves the harness: unbound, validating strictly with
// the tree's anchor, gives every case the rcode and AD bit the zone was
// built to produce, and the Extended DNS Error for the first failure in
// each bogus zone (later ones may be reported as a key already marked
// bad). If a zone were built wrong (a DS that matches after all, a
// tampered record still verifying, an opt-out chain without the flag),
// this test is where it shows.
func TestUnboundOracle(t *testing.T) {
	z, named := Start(t)
	u := z.Unbound(t, named.Addr)
	c := &dns.Client{Timeout: 5 * time.Second}
	failed := make(map[string]bool)
	for _, tc := range Cases {
		m, _, err := c.Exchange(Query(tc, true, false, false), u.Addr)
		if err != nil {
			t.Fatalf("%s: %v", tc, err)
		}
		want := tc.EDE
		if tc.UnboundEDE != 0 {
			want = tc.UnboundEDE
		}
		first := tc.Verdict == Bogus && !failed[tc.Zone()]
		if tc.Verdict == Bogus {
			failed[tc.Zone()] = true
		}
		if err := Check(tc, m, first || tc.Verdict == Secure, want); err != nil {
			t.Errorf("unbound: %v\n%s", err, m)
		}
	}
	// Once more, as the differential test asks: with AD only, AD is set
	// exactly on secure answers; on a plain query never (RFC 6840 §5.8).
	for _, tc := range Cases {
		for _, ad := range []bool{true, false} {
			m, _, err := c.Exchange(Query(tc, false, ad, false), u.Addr)
			if err != nil {
				t.Fatalf("%s: %v", tc, err)
			}
			if want := ad && tc.Verdict == Secure; m.Rcode != tc.Rcode || m.AuthenticatedData != want {
				t.Errorf("unbound, AD=%v query: %s: rcode %s AD %v, want %s AD %v", ad, tc, dns.RcodeToString[m.Rcode], m.AuthenticatedData, dns.RcodeToString[tc.Rcode], want)
			}
		}
	}
	if t.Failed() {
		t.Logf("unbound's log:\n%s", u.Logs())
	}
}

// TestUnboundWrongAnchor checks the oracle from the other side: with an
// anchor that matches no key of test., unbound calls nothing secure, so
// the AD bits above come from the anchor and the zones' signing.
func TestUnboundWrongAnchor(t *testing.T) {
	z, named := Start(t)
	z.Anchors = []string{"test. 300 IN DS 1 13 2 0000000000000000000000000000000000000000000000000000000000000000"}
	u := z.Unbound(t, named.Addr)
	c := &dns.Client{Timeout: 5 * time.Second}
	for _, tc := range Cases[:3] {
		m, _, err := c.Exchange(Query(tc, true, false, false), u.Addr)
		if err != nil {
			t.Fatalf("%s: %v", tc, err)
		}
		if m.Rcode != dns.RcodeServerFailure || m.AuthenticatedData {
			t.Errorf("%s with an anchor that matches no key: rcode %s AD %v, want SERVFAIL without AD", tc, dns.RcodeToString[m.Rcode], m.AuthenticatedData)
		}
	}
}
