package dnssec

import (
	"crypto"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testKey is a zone key with its private half.
type testKey struct {
	rr   *dns.DNSKEY
	priv crypto.Signer
}

// newTestKey makes a zone key of alg for zone; ED448 keys come from
// circl, the others from miekg/dns.
func newTestKey(t testing.TB, zone string, alg uint8) testKey {
	t.Helper()
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: 257, Protocol: 3, Algorithm: alg}
	if alg == dns.ED448 {
		return testKey{k, newED448Key(t, k)}
	}
	bits := map[uint8]int{dns.RSASHA1: 1024, dns.RSASHA1NSEC3SHA1: 1024, dns.RSASHA256: 2048, dns.RSASHA512: 1024,
		dns.ECDSAP256SHA256: 256, dns.ECDSAP384SHA384: 384, dns.ED25519: 256}[alg]
	p, err := k.Generate(bits)
	if err != nil {
		t.Fatalf("generate %d key: %v", alg, err)
	}
	return testKey{k, p.(crypto.Signer)}
}

// sign signs rrs with k, valid around testNow.
func (k testKey) sign(t testing.TB, rrs []dns.RR) *dns.RRSIG {
	t.Helper()
	sig := &dns.RRSIG{Hdr: dns.RR_Header{Ttl: rrs[0].Header().Ttl}, Algorithm: k.rr.Algorithm, KeyTag: k.rr.KeyTag(),
		SignerName: k.rr.Hdr.Name, Inception: uint32(testNow.Add(-time.Hour).Unix()),
		Expiration: uint32(testNow.Add(time.Hour).Unix())}
	if k.rr.Algorithm == dns.ED448 {
		signED448(t, k.priv, sig, rrs)
		return sig
	}
	if err := sig.Sign(k.priv, rrs); err != nil {
		t.Fatalf("sign: %v", err)
	}
	return sig
}

// mixCase changes the case of the letters of s at random.
func mixCase(r *rand.Rand, s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' && r.IntN(2) == 0 {
			b[i] = c - 'a' + 'A'
		} else if 'A' <= c && c <= 'Z' && r.IntN(2) == 0 {
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

// randomSet returns an RRset of one type at owner under zone, with
// random RDATA, names in mixed case, and now and then a duplicate
// (differing only in case and TTL).
func randomSet(r *rand.Rand, owner, zone string) []dns.RR {
	name := func() string {
		return mixCase(r, fmt.Sprintf("h%d.%s", r.IntN(5), []string{zone, "example.net.", "Other.ORG."}[r.IntN(3)]))
	}
	types := []string{"A", "AAAA", "NS", "MX", "CNAME", "SOA", "SRV", "TXT", "PTR", "DNAME"}
	ty := types[r.IntN(len(types))]
	n := 1 + r.IntN(4)
	if ty == "CNAME" || ty == "SOA" || ty == "DNAME" {
		n = 1
	}
	owner = mixCase(r, owner) // one case for the set: miekg/dns wants it
	var out []dns.RR
	for range n {
		var rdata string
		switch ty {
		case "A":
			rdata = fmt.Sprintf("192.0.2.%d", r.IntN(256))
		case "AAAA":
			rdata = fmt.Sprintf("2001:db8::%x", r.IntN(65536))
		case "NS", "CNAME", "PTR", "DNAME":
			rdata = name()
		case "MX":
			rdata = fmt.Sprintf("%d %s", r.IntN(3), name())
		case "SOA":
			rdata = fmt.Sprintf("%s %s %d 3600 600 86400 300", name(), name(), r.Uint32())
		case "SRV":
			rdata = fmt.Sprintf("%d %d %d %s", r.IntN(3), r.IntN(3), r.IntN(65536), name())
		case "TXT":
			rdata = fmt.Sprintf("%q %q", strings.Repeat("x", r.IntN(4)), mixCase(r, "Text"))
		}
		rr, err := dns.NewRR(fmt.Sprintf("%s 3600 IN %s %s", owner, ty, rdata))
		if err != nil {
			panic(err)
		}
		out = append(out, rr)
	}
	if r.IntN(3) == 0 {
		d := dns.Copy(out[r.IntN(len(out))])
		if ty != "TXT" { // the same record, every name in upper case
			d, _ = dns.NewRR(strings.ToUpper(d.String()))
		}
		d.Header().Ttl, d.Header().Name = 60, owner
		out = append(out, d)
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// rename returns copies of rrs at owner.
func rename(rrs []dns.RR, owner string) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
		out[i].Header().Name = owner
	}
	return out
}

// flipSignature returns a copy of sig with one bit of its signature
// flipped.
func flipSignature(r *rand.Rand, sig *dns.RRSIG) *dns.RRSIG {
	c := dns.Copy(sig).(*dns.RRSIG)
	raw, _ := base64.StdEncoding.DecodeString(c.Signature)
	raw[r.IntN(len(raw))] ^= 1 << r.IntN(8)
	c.Signature = base64.StdEncoding.EncodeToString(raw)
	return c
}

// TestVerifyDifferential checks verifySig against miekg/dns's
// RRSIG.Verify, for every algorithm miekg knows, over random RRsets:
// wildcard-expanded owners, mixed case, embedded names, duplicates.
// Each variant has an expected outcome too, so the two cannot agree on
// a wrong answer.
func TestVerifyDifferential(t *testing.T) {
	t.Parallel()
	const zone = "example.com."
	for _, alg := range []uint8{dns.RSASHA1, dns.RSASHA1NSEC3SHA1, dns.RSASHA256, dns.RSASHA512,
		dns.ECDSAP256SHA256, dns.ECDSAP384SHA384, dns.ED25519} {
		t.Run(fmt.Sprintf("alg=%d", alg), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(alg), 13))
			k := newTestKey(t, zone, alg)
			pk := newPubKey(k.rr)
			if pk.err != nil {
				t.Fatal(pk.err)
			}
			for i := range 40 {
				owner := fmt.Sprintf("n%d.%s", i, zone)
				rrs := randomSet(r, owner, zone)
				wild := i%3 == 0
				if wild {
					rrs = rename(rrs, "*.w."+zone)
				}
				sig := k.sign(t, rrs)
				if wild {
					rrs = rename(rrs, mixCase(r, fmt.Sprintf("a%d.B.w.%s", i, zone)))
					sig.Hdr.Name = rrs[0].Header().Name
				}
				type variant struct {
					name string
					sig  *dns.RRSIG
					rrs  []dns.RR
					ok   bool
				}
				vs := []variant{{"as signed", sig, rrs, true}}
				shuffled := rename(rrs, mixCase(r, rrs[0].Header().Name))
				r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				upper := dns.Copy(sig).(*dns.RRSIG)
				upper.SignerName = strings.ToUpper(upper.SignerName)
				vs = append(vs, variant{"reordered, recased", sig, shuffled, true},
					variant{"signer name upper case", upper, rrs, true},
					variant{"flipped signature bit", flipSignature(r, sig), rrs, false})
				if a, ok := rrs[0].(*dns.A); ok {
					c := dns.Copy(a).(*dns.A)
					c.A[3]++
					vs = append(vs, variant{"changed address", sig, append([]dns.RR{c}, rrs[1:]...), false})
				}
				ttl := dns.Copy(sig).(*dns.RRSIG)
				ttl.OrigTtl++
				vs = append(vs, variant{"changed original TTL", ttl, rrs, false})
				// An RRset whose records spell the owner in different
				// cases is one RRset (RFC 2181 §5, names compare without
				// case): we verify it, miekg/dns refuses it (ErrRRset).
				if len(rrs) > 1 {
					mixed := rename(rrs, rrs[0].Header().Name)
					mixed[0].Header().Name = strings.ToUpper(mixed[0].Header().Name)
					mixed[1].Header().Name = strings.ToLower(mixed[1].Header().Name)
					if err := verifySig(pk, sig, mixed); err != nil {
						t.Errorf("set %d: owner in mixed case: %v", i, err)
					}
					if err := sig.Verify(k.rr, mixed); err != dns.ErrRRset {
						t.Errorf("set %d: miekg on owners in mixed case: %v, want ErrRRset (has miekg changed?)", i, err)
					}
				}
				for _, v := range vs {
					mine := verifySig(pk, v.sig, v.rrs)
					theirs := v.sig.Verify(k.rr, v.rrs)
					if (mine == nil) != (theirs == nil) {
						t.Errorf("set %d %s: ours %v, miekg %v\n%v\n%v", i, v.name, mine, theirs, v.sig, v.rrs)
					}
					if (mine == nil) != v.ok {
						t.Errorf("set %d %s: ours %v, want ok=%v\n%v\n%v", i, v.name, mine, v.ok, v.sig, v.rrs)
					}
				}
			}
		})
	}
}

// TestVerifyED448 signs with circl over signedData and verifies; a
// flipped bit, another key or a changed record must fail. A real
// signer's ED448 signatures are checked by TestVerifyBindSigned.
func TestVerifyED448(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(16, 16))
	k, other := newTestKey(t, "example.com.", dns.ED448), newTestKey(t, "example.com.", dns.ED448)
	pk := newPubKey(k.rr)
	for i := range 20 {
		rrs := randomSet(r, fmt.Sprintf("n%d.example.com.", i), "example.com.")
		sig := k.sign(t, rrs)
		if err := verifySig(pk, sig, rrs); err != nil {
			t.Fatalf("set %d: %v\n%v\n%v", i, err, sig, rrs)
		}
		if err := verifySig(pk, flipSignature(r, sig), rrs); err == nil {
			t.Errorf("set %d: a flipped signature bit verifies", i)
		}
		o := dns.Copy(other.rr).(*dns.DNSKEY)
		o.Hdr.Name = k.rr.Hdr.Name
		wrong := newPubKey(o)
		wrong.tag = sig.KeyTag
		if err := verifySig(wrong, sig, rrs); err == nil {
			t.Errorf("set %d: another key verifies", i)
		}
		ttl := dns.Copy(sig).(*dns.RRSIG)
		ttl.OrigTtl++
		if err := verifySig(pk, ttl, rrs); err == nil {
			t.Errorf("set %d: a changed original TTL verifies", i)
		}
	}
}

// TestParsePublicKey checks the key checks: what miekg/dns would refuse
// (and a few it would let through to crypto/rsa, which refuses them).
func TestParsePublicKey(t *testing.T) {
	t.Parallel()
	rsaKey := func(exp []byte, modBytes int, lead byte) string {
		b := []byte{byte(len(exp))}
		b = append(b, exp...)
		mod := make([]byte, modBytes)
		for i := range mod {
			mod[i] = 0xc5
		}
		mod[0] = lead
		return base64.StdEncoding.EncodeToString(append(b, mod...))
	}
	p256 := newTestKey(t, "example.com.", dns.ECDSAP256SHA256).rr.PublicKey
	raw, _ := base64.StdEncoding.DecodeString(p256)
	raw[63] ^= 1 // off the curve
	offCurve := base64.StdEncoding.EncodeToString(raw)
	tests := []struct {
		name    string
		alg     uint8
		flags   uint16
		proto   uint8
		key     string
		wantErr string
	}{
		{"RSA 2048", dns.RSASHA256, 257, 3, rsaKey([]byte{1, 0, 1}, 256, 0xc5), ""},
		{"RSA 4096", dns.RSASHA256, 257, 3, rsaKey([]byte{1, 0, 1}, 512, 0xc5), ""},
		{"RSA 1024", dns.RSASHA1, 257, 3, rsaKey([]byte{3}, 128, 0xc5), ""},
		{"RSA 1016 bits", dns.RSASHA256, 257, 3, rsaKey([]byte{1, 0, 1}, 127, 0xc5), "modulus of 1016 bits"},
		{"RSA 4104 bits", dns.RSASHA256, 257, 3, rsaKey([]byte{1, 0, 1}, 513, 0xc5), "modulus of 4104 bits"},
		{"RSA modulus leading zero", dns.RSASHA256, 257, 3, rsaKey([]byte{1, 0, 1}, 256, 0), "leading zero"},
		{"RSA exponent leading zero", dns.RSASHA256, 257, 3, rsaKey([]byte{0, 1, 0, 1}, 256, 0xc5), "leading zero"},
		{"RSA exponent of 5 octets", dns.RSASHA256, 257, 3, rsaKey([]byte{1, 0, 0, 0, 1}, 256, 0xc5), "exponent of 5 octets"},
		{"RSA exponent 2^31", dns.RSASHA256, 257, 3, rsaKey([]byte{0x80, 0, 0, 1}, 256, 0xc5), "RSA exponent 2147483649"},
		{"RSA exponent 1", dns.RSASHA256, 257, 3, rsaKey([]byte{1}, 256, 0xc5), "RSA exponent 1"},
		{"RSA empty", dns.RSASHA256, 257, 3, "AA==", "too short"},
		{"P-256", dns.ECDSAP256SHA256, 257, 3, p256, ""},
		{"P-256 off the curve", dns.ECDSAP256SHA256, 257, 3, offCurve, "ECDSA key"},
		{"P-256 key for P-384", dns.ECDSAP384SHA384, 257, 3, p256, "64 octets, want 96"},
		{"Ed25519 short", dns.ED25519, 257, 3, base64.StdEncoding.EncodeToString(make([]byte, 31)), "31 octets"},
		{"Ed448 short", dns.ED448, 257, 3, base64.StdEncoding.EncodeToString(make([]byte, 56)), "56 octets"},
		{"bad base64", dns.ED25519, 257, 3, "!!!", "public key"},
		{"protocol 2", dns.ECDSAP256SHA256, 257, 2, p256, "protocol 2"},
		{"not a zone key", dns.ECDSAP256SHA256, 1, 3, p256, "not a zone key"},
		{"unknown algorithm", 200, 257, 3, p256, "algorithm 200"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET},
				Flags: tc.flags, Protocol: tc.proto, Algorithm: tc.alg, PublicKey: tc.key}
			p := newPubKey(k)
			if tc.wantErr == "" {
				if p.err != nil || p.key == nil {
					t.Fatalf("err = %v, want a key", p.err)
				}
				return
			}
			if p.err == nil || !strings.Contains(p.err.Error(), tc.wantErr) || p.key != nil {
				t.Fatalf("err = %v, want %q", p.err, tc.wantErr)
			}
		})
	}
}
