package dnssec

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestSignedDataMatchesMiekg: the signed data built here is the one
// miekg/dns signs (checked through ED25519, which both can do), whatever
// the case of the names, the order of the records and duplicates, for
// wildcard expansions and for each type whose RDATA names are lowered,
// and a changed record no longer verifies.
func TestSignedDataMatchesMiekg(t *testing.T) {
	key := &dns.DNSKEY{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: 257, Protocol: 3, Algorithm: dns.ED25519}
	priv, err := key.Generate(256)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := base64.StdEncoding.DecodeString(key.PublicKey)
	cases := []struct {
		name   string
		signed []string // the set as signed
		asked  []string // the same set as an answer may carry it
		bad    string   // asked[0] changed where it counts
	}{
		{"A set, order and duplicates", []string{"www.example. 300 IN A 192.0.2.1", "www.example. 300 IN A 192.0.2.2"},
			[]string{"WWW.Example. 300 IN A 192.0.2.2", "WWW.Example. 300 IN A 192.0.2.1", "WWW.Example. 300 IN A 192.0.2.2"},
			"WWW.Example. 300 IN A 192.0.2.3"},
		{"TTL below the original", []string{"www.example. 300 IN A 192.0.2.1"}, []string{"www.example. 17 IN A 192.0.2.1"},
			"www.example. 17 IN A 192.0.2.9"},
		{"wildcard expansion", []string{"*.example. 300 IN A 192.0.2.7"}, []string{"Deep.Sub.example. 300 IN A 192.0.2.7"},
			"Deep.Sub.example. 300 IN A 192.0.2.8"},
		{"NS names lowered", []string{"example. 300 IN NS ns1.example.", "example. 300 IN NS ns2.example."},
			[]string{"example. 300 IN NS NS2.Example.", "example. 300 IN NS ns1.EXAMPLE."}, "example. 300 IN NS ns3.example."},
		{"MX", []string{"example. 300 IN MX 10 mail.example."}, []string{"example. 300 IN MX 10 MAIL.example."}, "example. 300 IN MX 20 mail.example."},
		{"SOA", []string{"example. 300 IN SOA ns.example. host.example. 1 2 3 4 5"}, []string{"example. 300 IN SOA NS.example. Host.Example. 1 2 3 4 5"},
			"example. 300 IN SOA ns.example. host.example. 2 2 3 4 5"},
		{"SRV", []string{"_s._tcp.example. 300 IN SRV 1 2 3 t.example."}, []string{"_s._tcp.example. 300 IN SRV 1 2 3 T.EXAMPLE."}, "_s._tcp.example. 300 IN SRV 1 2 3 u.example."},
		{"CNAME", []string{"c.example. 300 IN CNAME www.example."}, []string{"c.example. 300 IN CNAME WWW.example."}, "c.example. 300 IN CNAME ww.example."},
		{"DNAME", []string{"d.example. 300 IN DNAME other.example."}, []string{"d.example. 300 IN DNAME OTHER.example."}, "d.example. 300 IN DNAME another.example."},
		{"PTR", []string{"1.example. 300 IN PTR host.example."}, []string{"1.example. 300 IN PTR Host.example."}, "1.example. 300 IN PTR host2.example."},
		{"NAPTR", []string{`n.example. 300 IN NAPTR 1 2 "u" "E2U+sip" "" repl.example.`}, []string{`n.example. 300 IN NAPTR 1 2 "u" "E2U+sip" "" REPL.example.`},
			`n.example. 300 IN NAPTR 1 2 "u" "E2U+sip" "" repl2.example.`},
		{"NSEC keeps its case", []string{"a.example. 300 IN NSEC b.example. A RRSIG NSEC"}, []string{"a.example. 300 IN NSEC b.example. A RRSIG NSEC"},
			"a.example. 300 IN NSEC B.example. A RRSIG NSEC"},
		{"TXT keeps its case", []string{`t.example. 300 IN TXT "Mixed Case stays"`}, []string{`t.example. 300 IN TXT "Mixed Case stays"`},
			`t.example. 300 IN TXT "mixed case stays"`},
	}
	parse := func(ss []string) []dns.RR {
		var rrs []dns.RR
		for _, s := range ss {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			rrs = append(rrs, rr)
		}
		return rrs
	}
	now := time.Now()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			signed, asked := parse(c.signed), parse(c.asked)
			sig := &dns.RRSIG{Algorithm: dns.ED25519, KeyTag: key.KeyTag(), SignerName: "Example.",
				Inception: uint32(now.Add(-time.Hour).Unix()), Expiration: uint32(now.Add(time.Hour).Unix())}
			if err := sig.Sign(priv.(ed25519.PrivateKey), signed); err != nil {
				t.Fatal(err)
			}
			raw, _ := base64.StdEncoding.DecodeString(sig.Signature)
			// The RRSIG as an answer carries it: owned by the (expanded) name.
			sig.Hdr.Name = asked[0].Header().Name
			if err := sig.Verify(key, asked); err != nil {
				t.Fatalf("miekg does not verify the asked form: %v", err)
			}
			data, err := signedData(sig, asked)
			if err != nil {
				t.Fatal(err)
			}
			if !ed25519.Verify(pub, data, raw) {
				t.Fatal("the signed data differs from miekg's")
			}
			// A changed record breaks it, here as in miekg.
			tampered := append(parse([]string{c.bad}), asked[1:]...)
			if sig.Verify(key, tampered) == nil {
				t.Fatal("miekg verifies the changed form: a useless case")
			}
			data, err = signedData(sig, tampered)
			if err == nil && ed25519.Verify(pub, data, raw) {
				t.Error("a changed record still verifies")
			}
		})
	}
}

// TestED448FromBIND verifies every RRset of a zone that BIND's
// dnssec-signzone signed with an ED448 key, and none once changed: the
// signed data here is checked against a real signer, not only against
// itself.
func TestED448FromBIND(t *testing.T) {
	for _, tool := range []string{"dnssec-keygen", "dnssec-signzone"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("E2E_REQUIRED") != "" {
				t.Fatalf("%s not installed (E2E_REQUIRED is set)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	zone := `$TTL 300
@ IN SOA ns.ed448.test. host.ed448.test. 1 3600 600 86400 300
@ IN NS ns
ns IN A 192.0.2.1
www IN A 192.0.2.2
www IN AAAA 2001:db8::2
mail IN MX 10 MX.ed448.test.
* IN TXT "wildcard"
`
	if err := os.WriteFile(filepath.Join(dir, "zone"), []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("dnssec-keygen", "-q", "-K", dir, "-a", "ED448", "-f", "KSK", "-n", "ZONE", "ed448.test.")
	run("dnssec-keygen", "-q", "-K", dir, "-a", "ED448", "-n", "ZONE", "ed448.test.")
	run("dnssec-signzone", "-q", "-S", "-K", dir, "-o", "ed448.test.", "-f", "signed", "zone")
	f, err := os.Open(filepath.Join(dir, "signed"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type key struct {
		name string
		t    uint16
	}
	sets := map[key][]dns.RR{}
	sigs := map[key][]*dns.RRSIG{}
	var keys []*dns.DNSKEY
	zp := dns.NewZoneParser(f, "ed448.test.", "signed")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		switch x := rr.(type) {
		case *dns.RRSIG:
			sigs[key{h.Name, x.TypeCovered}] = append(sigs[key{h.Name, x.TypeCovered}], x)
			continue
		case *dns.DNSKEY:
			keys = append(keys, x)
		}
		sets[key{h.Name, h.Rrtype}] = append(sets[key{h.Name, h.Rrtype}], rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("%d DNSKEYs, want 2", len(keys))
	}
	verified := 0
	for k, rrs := range sets {
		ss := sigs[k]
		if len(ss) == 0 {
			t.Errorf("%s %s has no RRSIG", k.name, dns.TypeToString[k.t])
			continue
		}
		for _, sig := range ss {
			if sig.Algorithm != dns.ED448 {
				t.Fatalf("RRSIG of algorithm %d", sig.Algorithm)
			}
			var dk *dns.DNSKEY
			for _, c := range keys {
				if c.KeyTag() == sig.KeyTag {
					dk = c
				}
			}
			if err := verifyED448(sig, dk, rrs); err != nil {
				t.Errorf("%s %s by %d: %v", k.name, dns.TypeToString[k.t], sig.KeyTag, err)
				continue
			}
			verified++
			bad := dns.Copy(rrs[0])
			bad.Header().Ttl = sig.OrigTtl
			if a, ok := bad.(*dns.A); ok {
				a.A = append([]byte(nil), a.A...)
				a.A[3] ^= 1
				if verifyED448(sig, dk, append([]dns.RR{bad}, rrs[1:]...)) == nil {
					t.Errorf("%s A verifies once changed", k.name)
				}
			}
		}
	}
	if verified < 8 {
		t.Errorf("only %d signatures verified", verified)
	}
	// A wildcard answer as a resolver sees it.
	wild := dns.Copy(sets[key{"*.ed448.test.", dns.TypeTXT}][0])
	wild.Header().Name = "Any.Thing.ed448.test."
	for _, sig := range sigs[key{"*.ed448.test.", dns.TypeTXT}] {
		var dk *dns.DNSKEY
		for _, c := range keys {
			if c.KeyTag() == sig.KeyTag {
				dk = c
			}
		}
		s := *sig
		s.Hdr.Name = wild.Header().Name
		if err := verifyED448(&s, dk, []dns.RR{wild}); err != nil {
			t.Errorf("wildcard expansion: %v", err)
		}
	}
}
