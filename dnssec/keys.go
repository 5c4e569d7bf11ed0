package dnssec

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/miekg/dns"
)

// pubKey is a DNSKEY with what verifying needs already worked out: its
// key tag, its canonical owner and its public key, decoded from base64
// and parsed once, when the DNSKEY set is accepted. It is read-only
// once built and shared by all queries.
type pubKey struct {
	rr   *dns.DNSKEY
	tag  uint16
	name string // canonical owner
	// key is *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or
	// ed448.PublicKey; nil when err says why the key cannot verify.
	key any
	err error
}

// RSA key limits, as miekg/dns's DNSKEY.publicKeyRSA applies them
// (exponent of at most 4 octets and below 2^31, no leading zero octet in
// exponent or modulus, modulus at most 4096 bits), with the floor of
// crypto/rsa since Go 1.24 (modulus at least 1024 bits): a key miekg
// would accept and Go would then refuse to use is refused here up front.
const (
	minRSABits = 1024
	maxRSABits = 4096
)

// Errors of key parsing and signature checks.
var (
	errKeyUnusable = errors.New("DNSKEY is not usable")
	errSigMismatch = errors.New("signature does not verify")
)

// newPubKey parses k. It never fails: a key that cannot verify anything
// carries the reason in err, so a signature by it fails with that reason
// (RFC 4035 §5.3.1 leaves such a key out; the set may have others).
func newPubKey(k *dns.DNSKEY) *pubKey {
	p := &pubKey{rr: k, tag: k.KeyTag(), name: canonical(k.Hdr.Name)}
	p.key, p.err = parsePublicKey(k)
	if p.err != nil {
		p.key = nil
		p.err = fmt.Errorf("%w: %s/%d: %v", errKeyUnusable, p.name, p.tag, p.err)
	}
	return p
}

// newPubKeys parses every key of ks.
func newPubKeys(ks []*dns.DNSKEY) []*pubKey {
	out := make([]*pubKey, 0, len(ks))
	for _, k := range ks {
		out = append(out, newPubKey(k))
	}
	return out
}

// parsePublicKey decodes the public key field of k for its algorithm
// (RFC 3110 RSA, RFC 6605 ECDSA, RFC 8080 Ed25519 and Ed448).
func parsePublicKey(k *dns.DNSKEY) (any, error) {
	if k.Protocol != 3 { // RFC 4034 §2.1.2
		return nil, fmt.Errorf("protocol %d, not 3", k.Protocol)
	}
	if k.Flags&dns.ZONE == 0 { // RFC 4034 §2.1.1
		return nil, errors.New("not a zone key")
	}
	raw, err := base64.StdEncoding.DecodeString(k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("public key: %v", err)
	}
	switch k.Algorithm {
	case dns.RSASHA1, dns.RSASHA1NSEC3SHA1, dns.RSASHA256, dns.RSASHA512:
		return parseRSA(raw)
	case dns.ECDSAP256SHA256:
		return parseECDSA(elliptic.P256(), raw, 64)
	case dns.ECDSAP384SHA384:
		return parseECDSA(elliptic.P384(), raw, 96)
	case dns.ED25519:
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 key of %d octets, want %d", len(raw), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(raw), nil
	case dns.ED448:
		if len(raw) != ed448.PublicKeySize {
			return nil, fmt.Errorf("Ed448 key of %d octets, want %d", len(raw), ed448.PublicKeySize)
		}
		return ed448.PublicKey(raw), nil
	}
	return nil, fmt.Errorf("algorithm %d is not supported", k.Algorithm)
}

// parseRSA reads an RFC 3110 §2 key: exponent length (one octet, or
// zero then two), exponent, modulus.
func parseRSA(b []byte) (*rsa.PublicKey, error) {
	if len(b) < 3 {
		return nil, errors.New("RSA key too short")
	}
	elen, off := int(b[0]), 1
	if elen == 0 {
		elen, off = int(b[1])<<8|int(b[2]), 3
	}
	if elen == 0 || elen > 4 || off+elen >= len(b) {
		return nil, fmt.Errorf("RSA exponent of %d octets", elen)
	}
	exp, mod := b[off:off+elen], b[off+elen:]
	if exp[0] == 0 || mod[0] == 0 {
		return nil, errors.New("RSA key with a leading zero octet")
	}
	var e uint64
	for _, x := range exp {
		e = e<<8 | uint64(x)
	}
	if e > 1<<31-1 || e < 3 || e%2 == 0 {
		return nil, fmt.Errorf("RSA exponent %d", e)
	}
	n := new(big.Int).SetBytes(mod)
	if bits := n.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("RSA modulus of %d bits, outside %d..%d", bits, minRSABits, maxRSABits)
	}
	return &rsa.PublicKey{N: n, E: int(e)}, nil
}

// parseECDSA reads an RFC 6605 §4 key: x then y, size octets in all,
// and checks the point is on the curve.
func parseECDSA(c elliptic.Curve, b []byte, size int) (*ecdsa.PublicKey, error) {
	if len(b) != size {
		return nil, fmt.Errorf("ECDSA key of %d octets, want %d", len(b), size)
	}
	k, err := ecdsa.ParseUncompressedPublicKey(c, append([]byte{4}, b...))
	if err != nil {
		return nil, fmt.Errorf("ECDSA key: %v", err)
	}
	return k, nil
}

// verifySig checks that sig, made by key p, signs the RRset rrs (all of
// one owner, type and class): the key must match the signature's
// algorithm, tag, class and signer name, and the signature must verify
// over the signed data of RFC 4034 §3.1.8.1. It does not look at the
// validity period.
func verifySig(p *pubKey, sig *dns.RRSIG, rrs []dns.RR) error {
	if p.err != nil {
		return p.err
	}
	k := p.rr
	if k.Algorithm != sig.Algorithm || p.tag != sig.KeyTag || k.Hdr.Class != sig.Hdr.Class ||
		p.name != canonical(sig.SignerName) {
		return fmt.Errorf("%w: %s/%d does not match the RRSIG", errKeyUnusable, p.name, p.tag)
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Signature)
	if err != nil {
		return fmt.Errorf("signature: %v", err)
	}
	data, err := signedData(sig, rrs)
	if err != nil {
		return err
	}
	return checkSignature(p.key, sig.Algorithm, data, raw)
}

// checkSignature verifies raw over data with key for alg.
func checkSignature(key any, alg uint8, data, raw []byte) error {
	ok := false
	switch k := key.(type) {
	case *rsa.PublicKey:
		var h crypto.Hash
		var sum []byte
		switch alg {
		case dns.RSASHA1, dns.RSASHA1NSEC3SHA1:
			d := sha1.Sum(data)
			h, sum = crypto.SHA1, d[:]
		case dns.RSASHA256:
			d := sha256.Sum256(data)
			h, sum = crypto.SHA256, d[:]
		case dns.RSASHA512:
			d := sha512.Sum512(data)
			h, sum = crypto.SHA512, d[:]
		default:
			return fmt.Errorf("algorithm %d with an RSA key", alg)
		}
		ok = rsa.VerifyPKCS1v15(k, h, sum, raw) == nil
	case *ecdsa.PublicKey:
		var sum []byte
		switch alg {
		case dns.ECDSAP256SHA256:
			d := sha256.Sum256(data)
			sum = d[:]
		case dns.ECDSAP384SHA384:
			d := sha512.Sum384(data)
			sum = d[:]
		default:
			return fmt.Errorf("algorithm %d with an ECDSA key", alg)
		}
		n := len(sum) // RFC 6605 §4: r and s, each as long as the hash
		if len(raw) != 2*n {
			return fmt.Errorf("ECDSA signature of %d octets, want %d", len(raw), 2*n)
		}
		r, s := new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])
		ok = ecdsa.Verify(k, sum, r, s)
	case ed25519.PublicKey:
		ok = len(raw) == ed25519.SignatureSize && ed25519.Verify(k, data, raw)
	case ed448.PublicKey:
		// RFC 8080 §4: pure Ed448 with an empty context.
		ok = len(raw) == ed448.SignatureSize && ed448.Verify(k, data, raw, "")
	default:
		return fmt.Errorf("algorithm %d is not supported", alg)
	}
	if !ok {
		return errSigMismatch
	}
	return nil
}
