package dnssec

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/miekg/dns"
)

// newED448Key fills k's public key with a fresh Ed448 key (RFC 8080 §3)
// and returns the private key; miekg/dns cannot generate one.
func newED448Key(t testing.TB, k *dns.DNSKEY) crypto.Signer {
	t.Helper()
	pub, priv, err := ed448.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate Ed448 key: %v", err)
	}
	k.PublicKey = base64.StdEncoding.EncodeToString(pub)
	return priv
}

// signED448 completes sig (algorithm, key tag, signer, validity set) over
// rrs the way miekg/dns's RRSIG.Sign does for the algorithms it knows:
// labels, type covered and original TTL from the set, then the
// signature over signedData (RFC 8080 §4).
func signED448(t testing.TB, priv crypto.Signer, sig *dns.RRSIG, rrs []dns.RR) {
	t.Helper()
	h := rrs[0].Header()
	sig.Hdr.Name, sig.Hdr.Rrtype, sig.Hdr.Class = h.Name, dns.TypeRRSIG, h.Class
	sig.OrigTtl, sig.TypeCovered = h.Ttl, h.Rrtype
	sig.Labels = uint8(dns.CountLabel(h.Name))
	if strings.HasPrefix(h.Name, "*.") {
		sig.Labels--
	}
	data, err := signedData(sig, rrs)
	if err != nil {
		t.Fatalf("signed data of %s: %v", h.Name, err)
	}
	sig.Signature = base64.StdEncoding.EncodeToString(ed448.Sign(priv.(ed448.PrivateKey), data, ""))
}
