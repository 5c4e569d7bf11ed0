package dnssec

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"slices"
	"strings"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/miekg/dns"
)

// signedData returns the bytes sig signs over rrs (RFC 4034 §3.1.8.1):
// the RRSIG's RDATA without its signature, the signer's name in lower
// case, then every RR of the set in canonical form (§6.2: owner in lower
// case, or its wildcard when sig has fewer labels than the owner; the
// RRSIG's original TTL; names in the RDATA of the types §6.2 lists, as
// corrected by RFC 6840 §5.1, in lower case; no compression), sorted by
// RDATA (§6.3), duplicates dropped. miekg/dns builds the same bytes
// inside RRSIG.Verify and Sign, but only for the algorithms it knows;
// this is for those it does not (ED448).
func signedData(sig *dns.RRSIG, rrs []dns.RR) ([]byte, error) {
	buf := make([]byte, 18, 512)
	binary.BigEndian.PutUint16(buf[0:], sig.TypeCovered)
	buf[2], buf[3] = sig.Algorithm, sig.Labels
	binary.BigEndian.PutUint32(buf[4:], sig.OrigTtl)
	binary.BigEndian.PutUint32(buf[8:], sig.Expiration)
	binary.BigEndian.PutUint32(buf[12:], sig.Inception)
	binary.BigEndian.PutUint16(buf[16:], sig.KeyTag)
	signer := make([]byte, 256)
	n, err := dns.PackDomainName(dns.CanonicalName(sig.SignerName), signer, 0, nil, false)
	if err != nil {
		return nil, err
	}
	buf = append(buf, signer[:n]...)

	type wire struct{ all, rdata []byte }
	wires := make([]wire, 0, len(rrs))
	for _, rr := range rrs {
		c := dns.Copy(rr)
		h := c.Header()
		h.Ttl = sig.OrigTtl
		if labels := dns.SplitDomainName(h.Name); len(labels) > int(sig.Labels) {
			h.Name = "*." + strings.Join(labels[len(labels)-int(sig.Labels):], ".") + "."
		}
		h.Name = dns.CanonicalName(h.Name)
		lowerRdataNames(c)
		b := make([]byte, dns.Len(c)+1)
		off, err := dns.PackRR(c, b, 0, nil, false)
		if err != nil {
			return nil, err
		}
		b = b[:off]
		_, nameEnd, err := dns.UnpackDomainName(b, 0)
		if err != nil || nameEnd+10 > len(b) {
			return nil, errors.New("dnssec: cannot find the RDATA of a packed record")
		}
		wires = append(wires, wire{all: b, rdata: b[nameEnd+10:]})
	}
	slices.SortFunc(wires, func(a, b wire) int { return bytes.Compare(a.rdata, b.rdata) })
	for i, w := range wires {
		if i > 0 && bytes.Equal(w.all, wires[i-1].all) {
			continue
		}
		buf = append(buf, w.all...)
	}
	return buf, nil
}

// lowerRdataNames lowers the domain names in rr's RDATA for the types
// RFC 4034 §6.2 lists, less HINFO (no names) and NSEC (RFC 6840 §5.1:
// its next name keeps its case); RRSIG's signer is lowered.
func lowerRdataNames(rr dns.RR) {
	switch x := rr.(type) {
	case *dns.NS:
		x.Ns = dns.CanonicalName(x.Ns)
	case *dns.MD:
		x.Md = dns.CanonicalName(x.Md)
	case *dns.MF:
		x.Mf = dns.CanonicalName(x.Mf)
	case *dns.CNAME:
		x.Target = dns.CanonicalName(x.Target)
	case *dns.SOA:
		x.Ns, x.Mbox = dns.CanonicalName(x.Ns), dns.CanonicalName(x.Mbox)
	case *dns.MB:
		x.Mb = dns.CanonicalName(x.Mb)
	case *dns.MG:
		x.Mg = dns.CanonicalName(x.Mg)
	case *dns.MR:
		x.Mr = dns.CanonicalName(x.Mr)
	case *dns.PTR:
		x.Ptr = dns.CanonicalName(x.Ptr)
	case *dns.MINFO:
		x.Rmail, x.Email = dns.CanonicalName(x.Rmail), dns.CanonicalName(x.Email)
	case *dns.MX:
		x.Mx = dns.CanonicalName(x.Mx)
	case *dns.RP:
		x.Mbox, x.Txt = dns.CanonicalName(x.Mbox), dns.CanonicalName(x.Txt)
	case *dns.AFSDB:
		x.Hostname = dns.CanonicalName(x.Hostname)
	case *dns.RT:
		x.Host = dns.CanonicalName(x.Host)
	case *dns.SIG:
		x.SignerName = dns.CanonicalName(x.SignerName)
	case *dns.RRSIG:
		x.SignerName = dns.CanonicalName(x.SignerName)
	case *dns.PX:
		x.Map822, x.Mapx400 = dns.CanonicalName(x.Map822), dns.CanonicalName(x.Mapx400)
	case *dns.NAPTR:
		x.Replacement = dns.CanonicalName(x.Replacement)
	case *dns.KX:
		x.Exchanger = dns.CanonicalName(x.Exchanger)
	case *dns.SRV:
		x.Target = dns.CanonicalName(x.Target)
	case *dns.DNAME:
		x.Target = dns.CanonicalName(x.Target)
	}
}

// verifyED448 checks sig over rrs with the ED448 key k (RFC 8080), with
// the checks miekg/dns's RRSIG.Verify makes before the cryptography: the
// key's algorithm, tag and owner name the signature's, and rrs is one
// RRset of sig's owner, class and type, at or below the signer, with at
// least sig's labels.
func verifyED448(sig *dns.RRSIG, k *dns.DNSKEY, rrs []dns.RR) error {
	if k.Algorithm != dns.ED448 || sig.Algorithm != dns.ED448 || k.KeyTag() != sig.KeyTag ||
		k.Protocol != 3 || k.Flags&dns.ZONE == 0 {
		return dns.ErrKey
	}
	signer := dns.CanonicalName(sig.SignerName)
	if signer != dns.CanonicalName(k.Hdr.Name) {
		return dns.ErrKey
	}
	if len(rrs) == 0 || !dns.IsRRset(rrs) {
		return dns.ErrRRset
	}
	h0 := rrs[0].Header()
	owner := dns.CanonicalName(h0.Name)
	if h0.Class != sig.Hdr.Class || h0.Rrtype != sig.TypeCovered || dns.CountLabel(owner) < int(sig.Labels) ||
		owner != dns.CanonicalName(sig.Hdr.Name) || !dns.IsSubDomain(signer, owner) {
		return dns.ErrRRset
	}
	pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
	if err != nil || len(pub) != ed448.PublicKeySize {
		return dns.ErrKey
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Signature)
	if err != nil || len(raw) != ed448.SignatureSize {
		return dns.ErrSig
	}
	data, err := signedData(sig, rrs)
	if err != nil {
		return err
	}
	if !ed448.Verify(ed448.PublicKey(pub), data, raw, "") {
		return dns.ErrSig
	}
	return nil
}
