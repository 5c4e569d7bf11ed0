package dnssec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/miekg/dns"
)

// signedData builds the data an RRSIG signs (RFC 4034 §3.1.8.1, RFC 4035
// §5.3.2): the RRSIG RDATA without the signature, signer name in lower
// case, then the RRset in canonical form (RFC 4034 §6.2): owner in lower
// case (and in wildcard form when the RRSIG has fewer labels than the
// owner), the class, the RRSIG's original TTL, RDATA with the embedded
// names of the types RFC 4034 §6.2 lists (minus HINFO, RFC 6840 §5.1) in
// lower case; records sorted by canonical RDATA (RFC 4034 §6.3),
// duplicates dropped (RFC 4034 §6.3, RFC 2181 §5). rrs must share owner,
// type and class; the RRSIG's labels must not exceed the owner's.
// Packing is miekg/dns's (dns.PackRR, uncompressed).
func signedData(sig *dns.RRSIG, rrs []dns.RR) ([]byte, error) {
	if len(rrs) == 0 {
		return nil, errors.New("empty RRset")
	}
	// The RRSIG RDATA: pack the RRSIG with the root as owner and no
	// signature, then drop the owner and the fixed header.
	head := *sig
	head.Hdr.Name = "."
	head.SignerName = canonical(sig.SignerName)
	head.Signature = ""
	buf := make([]byte, 0, 512)
	buf, err := packRR(buf, &head)
	if err != nil {
		return nil, fmt.Errorf("pack RRSIG: %w", err)
	}
	const fixed = 1 + 10 // root owner, type, class, TTL, RDLENGTH
	buf = append(buf[:0], buf[fixed:]...)

	h0 := rrs[0].Header()
	owner := canonical(h0.Name)
	n := dns.CountLabel(owner)
	if int(sig.Labels) > n {
		return nil, fmt.Errorf("RRSIG labels %d above the owner's %d", sig.Labels, n)
	}
	if int(sig.Labels) < n {
		owner = "*." + suffix(owner, int(sig.Labels)) // RFC 4034 §6.2 (4)
		if sig.Labels == 0 {
			owner = "*."
		}
	}
	// The fixed part shared by every record: owner, type, class, TTL.
	var prefix []byte
	prefix = binary.BigEndian.AppendUint16(prefix, h0.Rrtype)
	prefix = binary.BigEndian.AppendUint16(prefix, h0.Class)
	prefix = binary.BigEndian.AppendUint32(prefix, sig.OrigTtl)
	var ownerBuf [256]byte
	ownerWire := ownerBuf[:]
	off, err := dns.PackDomainName(owner, ownerWire, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("pack owner %s: %w", owner, err)
	}
	ownerWire = ownerWire[:off]
	lowerWireName(ownerWire) // escapes such as \065 are upper case too

	// Each record's RDATA, canonical.
	rdatas := make([][]byte, 0, len(rrs))
	scratch := make([]byte, 0, 256)
	for _, rr := range rrs {
		if c := canonicalRdata(rr); c != nil {
			rr = c
		}
		start := len(scratch)
		scratch, err = packRR(scratch, rr)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", dns.TypeToString[rr.Header().Rrtype], err)
		}
		wire := scratch[start:]
		o := skipName(wire)
		if o < 0 || o+10 > len(wire) {
			return nil, errors.New("packed record is malformed")
		}
		// Keep RDLENGTH with the RDATA: equal RDATA have equal lengths,
		// and comparing after it keeps miekg's and RFC 4034's order
		// where one RDATA is a prefix of another (shorter first).
		rdatas = append(rdatas, wire[o+8:])
	}
	slices.SortFunc(rdatas, func(a, b []byte) int { return bytes.Compare(a[2:], b[2:]) })
	for i, rd := range rdatas {
		if i > 0 && bytes.Equal(rd, rdatas[i-1]) {
			continue
		}
		buf = append(buf, ownerWire...)
		buf = append(buf, prefix...)
		buf = append(buf, rd...)
	}
	return buf, nil
}

// packRR appends rr in uncompressed wire form to buf.
func packRR(buf []byte, rr dns.RR) ([]byte, error) {
	start := len(buf)
	buf = slices.Grow(buf, dns.Len(rr)+1)[:start+dns.Len(rr)+1]
	off, err := dns.PackRR(rr, buf, start, nil, false)
	if err != nil {
		return buf[:start], err
	}
	return buf[:off], nil
}

// skipName returns the offset after the uncompressed name at the start
// of wire, or -1.
func skipName(wire []byte) int {
	for o := 0; o < len(wire); {
		l := int(wire[o])
		if l == 0 {
			return o + 1
		}
		if l&0xC0 != 0 {
			return -1
		}
		o += 1 + l
	}
	return -1
}

// lowerWireName lowers the ASCII letters of the labels of the
// uncompressed wire name w in place.
func lowerWireName(w []byte) {
	for o := 0; o < len(w) && w[o] != 0; o += 1 + int(w[o]) {
		for i := o + 1; i <= o+int(w[o]) && i < len(w); i++ {
			if 'A' <= w[i] && w[i] <= 'Z' {
				w[i] += 'a' - 'A'
			}
		}
	}
}

// canonicalRdata returns a copy of rr with the domain names in its RDATA
// in lower case when its type is one of RFC 4034 §6.2 (3)'s (HINFO
// dropped by RFC 6840 §5.1; NXT and A6 are not in miekg/dns), or nil
// when rr needs no change.
func canonicalRdata(rr dns.RR) dns.RR {
	var names []*string
	var c dns.RR
	switch x := rr.(type) {
	case *dns.NS:
		y := *x
		c, names = &y, []*string{&y.Ns}
	case *dns.MD:
		y := *x
		c, names = &y, []*string{&y.Md}
	case *dns.MF:
		y := *x
		c, names = &y, []*string{&y.Mf}
	case *dns.CNAME:
		y := *x
		c, names = &y, []*string{&y.Target}
	case *dns.SOA:
		y := *x
		c, names = &y, []*string{&y.Ns, &y.Mbox}
	case *dns.MB:
		y := *x
		c, names = &y, []*string{&y.Mb}
	case *dns.MG:
		y := *x
		c, names = &y, []*string{&y.Mg}
	case *dns.MR:
		y := *x
		c, names = &y, []*string{&y.Mr}
	case *dns.PTR:
		y := *x
		c, names = &y, []*string{&y.Ptr}
	case *dns.MINFO:
		y := *x
		c, names = &y, []*string{&y.Rmail, &y.Email}
	case *dns.MX:
		y := *x
		c, names = &y, []*string{&y.Mx}
	case *dns.RP:
		y := *x
		c, names = &y, []*string{&y.Mbox, &y.Txt}
	case *dns.AFSDB:
		y := *x
		c, names = &y, []*string{&y.Hostname}
	case *dns.RT:
		y := *x
		c, names = &y, []*string{&y.Host}
	case *dns.SIG:
		y := *x
		c, names = &y, []*string{&y.SignerName}
	case *dns.PX:
		y := *x
		c, names = &y, []*string{&y.Map822, &y.Mapx400}
	case *dns.NAPTR:
		y := *x
		c, names = &y, []*string{&y.Replacement}
	case *dns.KX:
		y := *x
		c, names = &y, []*string{&y.Exchanger}
	case *dns.SRV:
		y := *x
		c, names = &y, []*string{&y.Target}
	case *dns.DNAME:
		y := *x
		c, names = &y, []*string{&y.Target}
	default:
		return nil
	}
	for _, n := range names {
		*n = dns.CanonicalName(*n)
	}
	return c
}
