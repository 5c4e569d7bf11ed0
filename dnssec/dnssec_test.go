package dnssec

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

const zero64 = "0000000000000000000000000000000000000000000000000000000000000000"

// testWorld is the zone tree most tests validate against: a signed root
// (the anchor) and one child per feature.
func testWorld(t testing.TB) *world {
	return newWorld(t, testNow,
		testZone{name: ".", alg: dns.ECDSAP256SHA256},
		testZone{name: "ok.", alg: dns.ECDSAP256SHA256, records: `
www.ok. 3600 IN A 192.0.2.1
*.wild.ok. 3600 IN A 192.0.2.2
alias.ok. 3600 IN CNAME www.n3.
x.y.ok. 3600 IN A 192.0.2.3
dn.ok. 3600 IN DNAME ok.
short.ok. 60 IN A 192.0.2.4`},
		testZone{name: "n3.", alg: dns.ED25519, nsec3: true, iter: 1, records: `
www.n3. 3600 IN A 192.0.2.10
*.wild.n3. 3600 IN TXT "w"
x.y.n3. 3600 IN A 192.0.2.11`},
		testZone{name: "oo.", alg: dns.ECDSAP256SHA256, nsec3: true, optOut: true, records: `
www.oo. 3600 IN A 192.0.2.20`},
		testZone{name: "insec.oo.", records: `www.insec.oo. 3600 IN A 192.0.2.21`},
		testZone{name: "rsa.", alg: dns.RSASHA256, records: `www.rsa. 3600 IN A 192.0.2.30`},
		testZone{name: "insecure.rsa.", records: `www.insecure.rsa. 3600 IN A 192.0.2.31`},
		testZone{name: "r512.", alg: dns.RSASHA512, records: `www.r512. 3600 IN A 192.0.2.32`},
		testZone{name: "sha1.", alg: dns.RSASHA1, records: `www.sha1. 3600 IN A 192.0.2.33`},
		testZone{name: "n3sha1.", alg: dns.RSASHA1NSEC3SHA1, nsec3: true, records: `www.n3sha1. 3600 IN A 192.0.2.34`},
		testZone{name: "p384.", alg: dns.ECDSAP384SHA384, records: `www.p384. 3600 IN A 192.0.2.35`},
		testZone{name: "mismatch.", alg: dns.ECDSAP256SHA256, dsDigest: zero64, records: `www.mismatch. 3600 IN A 192.0.2.40`},
		testZone{name: "unknownalg.", alg: dns.ECDSAP256SHA256, dsAlg: 200, records: `www.unknownalg. 3600 IN A 192.0.2.41`},
		testZone{name: "ed448.", alg: dns.ED448, records: `
www.ed448. 3600 IN A 192.0.2.48
*.wild.ed448. 3600 IN A 192.0.2.49
mx.ed448. 3600 IN MX 10 Mail.ED448.`},
		testZone{name: "unknowndigest.", alg: dns.ECDSAP256SHA256, dsType: 200, records: `www.unknowndigest. 3600 IN A 192.0.2.42`},
		testZone{name: "hi3.", alg: dns.ECDSAP256SHA256, nsec3: true, iter: 200, records: `www.hi3. 3600 IN A 192.0.2.43`},
		testZone{name: "nokey.", alg: dns.ECDSAP256SHA256, noDNSKEY: true, records: `www.nokey. 3600 IN A 192.0.2.44`},
		testZone{name: "expired.", alg: dns.ECDSAP256SHA256, inception: -48 * time.Hour, expiration: -24 * time.Hour,
			records: `www.expired. 3600 IN A 192.0.2.45`},
		testZone{name: "future.", alg: dns.ECDSAP256SHA256, inception: 24 * time.Hour, expiration: 48 * time.Hour,
			records: `www.future. 3600 IN A 192.0.2.46`},
		testZone{name: "skewed.", alg: dns.ECDSAP256SHA256, inception: 2 * time.Minute, expiration: 24 * time.Hour,
			records: `www.skewed. 3600 IN A 192.0.2.47`},
	)
}

// rootAnchor returns the world's root DS as the only anchor.
func (w *world) rootAnchor() []dns.RR {
	return []dns.RR{w.zones["."].key.ToDS(dns.SHA256)}
}

// chase builds the answer to name/qtype the way a resolver would: the
// CNAME chain followed across zones, the last zone's authority section.
func (w *world) chase(name string, qtype uint16) *dns.Msg {
	m := w.query(name, qtype)
	for range 8 {
		last := m.Answer
		var target string
		for _, rr := range last {
			if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				target = c.Target
			}
		}
		if target == "" || len(m.Answer) == 0 {
			return m
		}
		found := false
		for _, rr := range m.Answer {
			if sameName(rr.Header().Name, target) {
				found = true
			}
		}
		if found {
			return m
		}
		next := w.query(target, qtype)
		m.Answer = append(m.Answer, next.Answer...)
		m.Ns, m.Rcode = next.Ns, next.Rcode
	}
	return m
}

func strip(types ...uint16) func(*dns.Msg) {
	return func(m *dns.Msg) {
		drop := func(sec []dns.RR) []dns.RR {
			var out []dns.RR
			for _, rr := range sec {
				t := rr.Header().Rrtype
				if s, ok := rr.(*dns.RRSIG); ok {
					t = s.TypeCovered
					for _, d := range types {
						if d == dns.TypeRRSIG {
							t = dns.TypeRRSIG
						}
					}
				}
				keep := true
				for _, d := range types {
					if t == d {
						keep = false
					}
				}
				if keep {
					out = append(out, rr)
				}
			}
			return out
		}
		m.Answer, m.Ns = drop(m.Answer), drop(m.Ns)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	w := testWorld(t)
	const none = 0xffff
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		mutate  func(*dns.Msg)
		cfg     func(*Config)
		verdict Verdict
		ede     uint16
		signer  string
		ttl0    bool // a secure answer whose signature expired within the skew
		reason  string
	}{
		{name: "many bad signatures cost at most maxSigChecks", qname: "www.ok.", qtype: dns.TypeA, mutate: func(m *dns.Msg) {
			sig := m.Answer[1].(*dns.RRSIG)
			for range 20 {
				c := dns.Copy(sig).(*dns.RRSIG)
				b := []byte(c.Signature)
				b[5] = "AB"[min(1, strings.IndexByte("A", b[5])+1)]
				c.Signature = string(b)
				m.Answer = append(m.Answer, c)
			}
			m.Answer = append(m.Answer[2:], m.Answer[:2]...)
		}, verdict: Bogus, ede: dns.ExtendedErrorCodeDNSBogus, reason: "more than 8 signature checks"},
		{name: "too many RRsets", qname: "www.ok.", qtype: dns.TypeA, mutate: func(m *dns.Msg) {
			for i := range 64 {
				rr, _ := dns.NewRR(fmt.Sprintf("h%d.ok. 60 IN A 192.0.2.1", i))
				m.Answer = append(m.Answer, rr)
			}
		}, verdict: Indeterminate, ede: none, reason: "more than 64"},
		{name: "secure A, ECDSA P-256", qname: "www.ok.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "ok."},
		{name: "secure A, RSASHA256", qname: "www.rsa.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "rsa."},
		{name: "secure A, RSASHA512", qname: "www.r512.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "r512."},
		{name: "secure A, RSASHA1", qname: "www.sha1.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "sha1."},
		{name: "secure A, NSEC3-RSASHA1", qname: "www.n3sha1.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "n3sha1."},
		{name: "secure A, ECDSA P-384", qname: "www.p384.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "p384."},
		{name: "secure A, ED25519", qname: "www.n3.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "n3."},
		{name: "secure DNSKEY", qname: "ok.", qtype: dns.TypeDNSKEY, verdict: Secure, ede: none, signer: "ok."},
		{name: "secure DS at a cut", qname: "ok.", qtype: dns.TypeDS, verdict: Secure, ede: none, signer: "."},
		{name: "NXDOMAIN NSEC", qname: "nx.ok.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "ok."},
		{name: "NODATA NSEC", qname: "www.ok.", qtype: dns.TypeAAAA, verdict: Secure, ede: none, signer: "ok."},
		{name: "NODATA NSEC empty non-terminal", qname: "y.ok.", qtype: dns.TypeA, verdict: Secure, ede: none},
		{name: "NXDOMAIN NSEC3", qname: "nx.n3.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "n3."},
		{name: "NXDOMAIN NSEC3 deeper", qname: "a.b.c.n3.", qtype: dns.TypeA, verdict: Secure, ede: none},
		{name: "NODATA NSEC3", qname: "www.n3.", qtype: dns.TypeAAAA, verdict: Secure, ede: none, signer: "n3."},
		{name: "NODATA NSEC3 empty non-terminal", qname: "y.n3.", qtype: dns.TypeA, verdict: Secure, ede: none},
		{name: "DS NODATA NSEC at a name that is no cut", qname: "www.ok.", qtype: dns.TypeDS, verdict: Secure, ede: none},
		{name: "wildcard NSEC", qname: "a.wild.ok.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "ok."},
		{name: "wildcard NSEC3", qname: "a.b.wild.n3.", qtype: dns.TypeTXT, verdict: Secure, ede: none, signer: "n3."},
		{name: "wildcard NODATA NSEC", qname: "a.wild.ok.", qtype: dns.TypeAAAA, verdict: Secure, ede: none},
		{name: "wildcard NODATA NSEC3", qname: "a.wild.n3.", qtype: dns.TypeA, verdict: Secure, ede: none},
		{name: "wildcard NSEC without proof", qname: "a.wild.ok.", qtype: dns.TypeA, mutate: strip(dns.TypeNSEC),
			verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "wildcard NSEC3 without proof", qname: "a.wild.n3.", qtype: dns.TypeTXT, mutate: strip(dns.TypeNSEC3),
			verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "wildcard answer with the NXDOMAIN proof of another name", qname: "a.wild.ok.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { m.Ns = w.query("zz.ok.", dns.TypeA).Ns[2:] }, verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "CNAME across zones", qname: "alias.ok.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "ok."},
		{name: "CNAME to a bogus target", qname: "alias.ok.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { m.Answer[len(m.Answer)-2].(*dns.A).A[3] = 99 }, verdict: Bogus, ede: dns.ExtendedErrorCodeDNSBogus},
		{name: "CNAME whose target is missing", qname: "alias.ok.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { m.Answer = m.Answer[:2]; m.Ns = nil }, verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "DNAME with synthesized CNAME", qname: "www.dn.ok.", qtype: dns.TypeA, verdict: Secure, ede: none, signer: "ok."},
		{name: "DNAME with a forged CNAME", qname: "www.dn.ok.", qtype: dns.TypeA, mutate: func(m *dns.Msg) {
			d := w.query("dn.ok.", dns.TypeDNAME)
			c := &dns.CNAME{Hdr: dns.RR_Header{Name: "www.dn.ok.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 3600}, Target: "www.rsa."}
			m.Answer = append(append(d.Answer, c), w.query("www.rsa.", dns.TypeA).Answer...)
			m.Ns, m.Rcode = nil, dns.RcodeSuccess
		}, verdict: Bogus, ede: dns.ExtendedErrorCodeRRSIGsMissing},
		{name: "opt-out: unsigned delegation is insecure", qname: "www.insec.oo.", qtype: dns.TypeA, verdict: Insecure, ede: none},
		{name: "opt-out: NXDOMAIN in an opt-out span is insecure", qname: "nx.oo.", qtype: dns.TypeA, verdict: Insecure, ede: none},
		{name: "opt-out zone: signed data is secure", qname: "www.oo.", qtype: dns.TypeA, verdict: Secure, ede: none},
		{name: "absent DS (NSEC): insecure", qname: "www.insecure.rsa.", qtype: dns.TypeA, verdict: Insecure, ede: none},
		{name: "absent DS: NXDOMAIN below is insecure", qname: "nx.insecure.rsa.", qtype: dns.TypeA, verdict: Insecure, ede: none},
		{name: "tampered record", qname: "www.ok.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { m.Answer[0].(*dns.A).A[3] = 66 }, verdict: Bogus, ede: dns.ExtendedErrorCodeDNSBogus, signer: "ok."},
		{name: "record added to a signed set", qname: "www.ok.", qtype: dns.TypeA, mutate: func(m *dns.Msg) {
			rr, _ := dns.NewRR("www.ok. 3600 IN A 203.0.113.1")
			m.Answer = append(m.Answer, rr)
		}, verdict: Bogus, ede: dns.ExtendedErrorCodeDNSBogus},
		{name: "expired signatures", qname: "www.expired.", qtype: dns.TypeA, verdict: Bogus, ede: dns.ExtendedErrorCodeSignatureExpired},
		{name: "signatures not yet valid", qname: "www.future.", qtype: dns.TypeA, verdict: Bogus, ede: dns.ExtendedErrorCodeSignatureNotYetValid},
		{name: "missing DNSKEY set", qname: "www.nokey.", qtype: dns.TypeA, verdict: Bogus, ede: dns.ExtendedErrorCodeDNSKEYMissing},
		{name: "RRSIG by a key not in the DNSKEY set", qname: "www.ok.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { m.Answer[1].(*dns.RRSIG).KeyTag++ }, verdict: Bogus, ede: dns.ExtendedErrorCodeDNSKEYMissing},
		{name: "missing RRSIG", qname: "www.ok.", qtype: dns.TypeA, mutate: strip(dns.TypeRRSIG),
			verdict: Bogus, ede: dns.ExtendedErrorCodeRRSIGsMissing},
		{name: "missing RRSIG on the NSEC", qname: "nx.ok.", qtype: dns.TypeA, mutate: func(m *dns.Msg) {
			var ns []dns.RR
			for _, rr := range m.Ns {
				if s, ok := rr.(*dns.RRSIG); !ok || s.TypeCovered != dns.TypeNSEC {
					ns = append(ns, rr)
				}
			}
			m.Ns = ns
		}, verdict: Bogus, ede: dns.ExtendedErrorCodeRRSIGsMissing},
		{name: "missing NSEC", qname: "nx.ok.", qtype: dns.TypeA, mutate: strip(dns.TypeNSEC),
			verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "missing NSEC3", qname: "nx.n3.", qtype: dns.TypeA, mutate: strip(dns.TypeNSEC3),
			verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "NODATA turned NXDOMAIN", qname: "www.ok.", qtype: dns.TypeAAAA,
			mutate: func(m *dns.Msg) { m.Rcode = dns.RcodeNameError }, verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "NXDOMAIN turned NODATA", qname: "nx.ok.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { m.Rcode = dns.RcodeSuccess }, verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "NXDOMAIN NSEC3 turned NODATA", qname: "nx.n3.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { m.Rcode = dns.RcodeSuccess }, verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "existing name denied with another name's NSEC", qname: "www.ok.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { *m = *w.query("nx.ok.", dns.TypeA) }, verdict: Bogus, ede: dns.ExtendedErrorCodeNSECMissing},
		{name: "DNSKEY not matching DS", qname: "www.mismatch.", qtype: dns.TypeA, verdict: Bogus, ede: dns.ExtendedErrorCodeDNSKEYMissing},
		{name: "unsupported DS algorithm", qname: "www.unknownalg.", qtype: dns.TypeA, verdict: Insecure,
			ede: dns.ExtendedErrorCodeUnsupportedDNSKEYAlgorithm},
		{name: "ED448: secure", qname: "www.ed448.", qtype: dns.TypeA, verdict: Secure, ede: none},
		{name: "ED448: embedded name in MX", qname: "mx.ed448.", qtype: dns.TypeMX, verdict: Secure, ede: none},
		{name: "ED448: wildcard expansion", qname: "a.wild.ed448.", qtype: dns.TypeA, verdict: Secure, ede: none},
		{name: "ED448: NXDOMAIN", qname: "nx.ed448.", qtype: dns.TypeA, verdict: Secure, ede: none},
		{name: "ED448: NODATA", qname: "www.ed448.", qtype: dns.TypeAAAA, verdict: Secure, ede: none},
		{name: "ED448: tampered record", qname: "www.ed448.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { m.Answer[0].(*dns.A).A[3]++ }, verdict: Bogus, ede: dns.ExtendedErrorCodeDNSBogus},
		{name: "unsupported DS digest", qname: "www.unknowndigest.", qtype: dns.TypeA, verdict: Insecure,
			ede: dns.ExtendedErrorCodeUnsupportedDSDigestType},
		{name: "NSEC3 iterations above the limit", qname: "nx.hi3.", qtype: dns.TypeA, verdict: Insecure,
			ede: dns.ExtendedErrorCodeUnsupportedNSEC3IterValue},
		{name: "NSEC3 iterations within a raised limit", qname: "nx.hi3.", qtype: dns.TypeA,
			cfg: func(c *Config) { c.MaxNSEC3Iterations = 500 }, verdict: Secure, ede: none},
		{name: "negative trust anchor", qname: "www.expired.", qtype: dns.TypeA,
			cfg: func(c *Config) { c.NegativeAnchors = []string{"Expired"} }, verdict: Insecure, ede: none},
		{name: "skew covers an early inception", qname: "www.skewed.", qtype: dns.TypeA, verdict: Secure, ede: none},
		{name: "skew too small for an early inception", qname: "www.skewed.", qtype: dns.TypeA,
			cfg: func(c *Config) { c.Skew = time.Minute }, verdict: Bogus, ede: dns.ExtendedErrorCodeSignatureNotYetValid},
		{name: "skew covers a recent expiry", qname: "www.expired.", qtype: dns.TypeA,
			cfg: func(c *Config) { c.Skew = 25 * time.Hour }, verdict: Secure, ede: none, ttl0: true},
		{name: "no anchor covers the name", qname: "www.rsa.", qtype: dns.TypeA,
			cfg: func(c *Config) { c.Anchors = []dns.RR{w.zones["ok."].key} }, verdict: Indeterminate, ede: none},
		{name: "DNSKEY anchor", qname: "www.ok.", qtype: dns.TypeA,
			cfg: func(c *Config) { c.Anchors = []dns.RR{w.zones["ok."].key} }, verdict: Secure, ede: none},
		{name: "DS anchor below the root", qname: "nx.n3.", qtype: dns.TypeA,
			cfg: func(c *Config) { c.Anchors = []dns.RR{w.zones["n3."].key.ToDS(dns.SHA1)} }, verdict: Secure, ede: none},
		{name: "wrong root anchor", qname: "www.ok.", qtype: dns.TypeA,
			cfg: func(c *Config) { c.Anchors = RootAnchors() }, verdict: Bogus, ede: dns.ExtendedErrorCodeDNSKEYMissing},
		{name: "SERVFAIL is not validated", qname: "www.ok.", qtype: dns.TypeA,
			mutate: func(m *dns.Msg) { m.Rcode = dns.RcodeServerFailure }, verdict: Indeterminate, ede: none},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Anchors: w.rootAnchor(), Clock: clockwork.NewFakeClockAt(testNow)}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			v, err := New(cfg, w)
			if err != nil {
				t.Fatal(err)
			}
			resp := w.chase(tc.qname, tc.qtype)
			if tc.mutate != nil {
				tc.mutate(resp)
			}
			before := resp.String()
			q := dns.Question{Name: tc.qname, Qtype: tc.qtype, Qclass: dns.ClassINET}
			got := v.Validate(context.Background(), q, resp)
			if resp.String() != before {
				t.Errorf("Validate changed the response")
			}
			if got.Verdict != tc.verdict {
				t.Fatalf("verdict = %v, want %v (%+v)\n%s", got.Verdict, tc.verdict, got, resp)
			}
			if tc.ede == none && got.HasEDE {
				t.Errorf("EDE %d, want none (%+v)", got.EDE, got)
			}
			if tc.ede != none && (!got.HasEDE || got.EDE != tc.ede) {
				t.Errorf("EDE = %d (has %v), want %d (%+v)", got.EDE, got.HasEDE, tc.ede, got)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", got.Reason, tc.reason)
			}
			if tc.signer != "" && got.Signer != tc.signer {
				t.Errorf("signer = %q, want %q", got.Signer, tc.signer)
			}
			switch got.Verdict {
			case Secure:
				if got.Reason != "" || (got.TTL == 0) != tc.ttl0 || got.TTL > 3600 || got.KeyTag == 0 || got.RRSIGTTL == 0 {
					t.Errorf("secure result %+v", got)
				}
			default:
				if got.Reason == "" || got.TTL != 0 {
					t.Errorf("result %+v: want a reason and no TTL", got)
				}
			}
		})
	}
}

// TestValidateTTL checks the TTL cap: records, original TTL, expiry.
func TestValidateTTL(t *testing.T) {
	t.Parallel()
	w := newWorld(t, testNow,
		testZone{name: ".", alg: dns.ECDSAP256SHA256},
		testZone{name: "soon.", alg: dns.ECDSAP256SHA256, inception: -time.Hour, expiration: 100 * time.Second,
			records: "www.soon. 3600 IN A 192.0.2.1"},
		testZone{name: "t.", alg: dns.ECDSAP256SHA256, records: "short.t. 60 IN A 192.0.2.1\nwww.t. 3600 IN A 192.0.2.2"},
	)
	tests := []struct {
		name  string
		qname string
		lower func(*dns.Msg)
		want  uint32
	}{
		{name: "record TTL", qname: "short.t.", want: 60},
		{name: "full TTL", qname: "www.t.", want: 3600},
		{name: "TTL lowered in transit", qname: "www.t.", lower: func(m *dns.Msg) { m.Answer[0].Header().Ttl = 10 }, want: 10},
		{name: "TTL raised in transit is capped by the original TTL", qname: "www.t.",
			lower: func(m *dns.Msg) { m.Answer[0].Header().Ttl = 99999 }, want: 3600},
		{name: "signature expiry", qname: "www.soon.", want: 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := New(Config{Anchors: w.rootAnchor(), Clock: clockwork.NewFakeClockAt(testNow)}, w)
			if err != nil {
				t.Fatal(err)
			}
			resp := w.query(tc.qname, dns.TypeA)
			if tc.lower != nil {
				tc.lower(resp)
			}
			got := v.Validate(context.Background(), dns.Question{Name: tc.qname, Qtype: dns.TypeA, Qclass: dns.ClassINET}, resp)
			if got.Verdict != Secure || got.TTL != tc.want {
				t.Errorf("got %+v, want secure with TTL %d", got, tc.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	w := &world{}
	a, _ := dns.NewRR("example. 3600 IN A 192.0.2.1")
	zsk, _ := dns.NewRR("example. 3600 IN DNSKEY 256 3 13 aGVsbG8=")
	zsk.(*dns.DNSKEY).Flags = 0
	tests := []struct {
		name string
		cfg  Config
		f    Fetcher
		want string
	}{
		{name: "defaults", cfg: Config{}, f: w},
		{name: "no fetcher", cfg: Config{}, want: "no fetcher"},
		{name: "anchor of another type", cfg: Config{Anchors: []dns.RR{a}}, f: w, want: "not a DS or DNSKEY"},
		{name: "anchor key without zone bit", cfg: Config{Anchors: []dns.RR{zsk}}, f: w, want: "not a zone key"},
		{name: "bad negative anchor", cfg: Config{NegativeAnchors: []string{"a..b"}}, f: w, want: "not a domain name"},
		{name: "negative skew", cfg: Config{Skew: -time.Second}, f: w, want: "negative"},
		{name: "negative iterations", cfg: Config{MaxNSEC3Iterations: -1}, f: w, want: "negative"},
		{name: "negative cache size", cfg: Config{KeyCacheSize: -1}, f: w, want: "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := New(tc.cfg, tc.f)
			if tc.want == "" {
				if err != nil || v == nil {
					t.Fatalf("New: %v", err)
				}
				if v.skew != DefaultSkew || v.maxIter != DefaultMaxNSEC3Iterations || v.cache.size != DefaultKeyCacheSize ||
					len(v.anchors["."].ds) != 2 {
					t.Errorf("defaults not applied: %+v", v)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRootAnchors checks the built-in anchors against IANA's
// root-anchors.xml (KSK-2017, KSK-2024).
func TestRootAnchors(t *testing.T) {
	t.Parallel()
	want := []string{
		".\t172800\tIN\tDS\t20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
		".\t172800\tIN\tDS\t38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
	}
	got := RootAnchors()
	if len(got) != len(want) {
		t.Fatalf("%d anchors, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("anchor %d = %q, want %q", i, got[i], want[i])
		}
	}
	got[0].(*dns.DS).Digest = "00"
	if RootAnchors()[0].(*dns.DS).Digest == "00" {
		t.Error("RootAnchors shares its records")
	}
}

func TestCompareNames(t *testing.T) {
	t.Parallel()
	// RFC 4034 §6.1's example, in order.
	order := []string{"example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.",
		"z.example.", "\\001.z.example.", "*.z.example.", "\\200.z.example."}
	for i := range order {
		for j := range order {
			got := compareNames(order[i], order[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("compare(%q, %q) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
}
