package tsig

import (
	"slices"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// replySigner signs the reply to one query (pipeline.ReplySigner): with
// the query's key, chained to its MAC (RFC 8945 §5.3), or, for the
// errors of §5.3.2, with the TSIG error set.
type replySigner struct {
	kr  *Keyring
	k   *key      // nil for BADKEY: the reply carries no MAC
	req *dns.TSIG // the query's TSIG record
	err uint16    // TSIG error: 0, BADKEY, BADSIG or BADTIME
}

var _ pipeline.ReplySigner = (*replySigner)(nil)

// Overhead is the length of the TSIG record: its owner and algorithm
// names uncompressed, the fixed fields, the MAC, and six bytes of other
// data (BADTIME).
func (s *replySigner) Overhead() int {
	mac := 0
	if s.k != nil {
		mac = s.k.size
	}
	// RR header: name, type, class, TTL, RDLENGTH; RDATA: algorithm,
	// time (6), fudge (2), MAC size (2), MAC, original ID (2), error
	// (2), other length (2), other data.
	return len(s.req.Hdr.Name) + 1 + 10 + len(s.req.Algorithm) + 1 + 16 + mac + 6
}

// Sign packs reply with a TSIG record appended.
func (s *replySigner) Sign(reply *dns.Msg) ([]byte, error) {
	now := uint64(s.kr.now().Unix())
	t := &dns.TSIG{
		Hdr:        dns.RR_Header{Name: dns.CanonicalName(s.req.Hdr.Name), Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm:  dns.CanonicalName(s.req.Algorithm),
		Fudge:      s.kr.fudge,
		TimeSigned: now,
		OrigId:     reply.Id,
		Error:      s.err,
	}
	requestMAC := s.req.MAC
	switch s.err {
	case dns.RcodeBadTime:
		// RFC 8945 §5.2.3: the time signed is the query's, and the
		// other data holds the server's time, so that the client can
		// see how far off its clock is.
		t.TimeSigned = s.req.TimeSigned
		t.OtherLen = 6
		t.OtherData = time48(now)
	case dns.RcodeBadKey, dns.RcodeBadSig:
		// §5.3.2: unsigned, MAC size 0 (miekg/dns leaves the MAC out
		// for these errors).
		requestMAC = ""
	}
	m := *reply
	m.Extra = append(slices.Clip(stripTSIG(reply.Extra)), t)
	p := &provider{k: s.k}
	wire, _, err := dns.TsigGenerateWithProvider(&m, p, requestMAC, false)
	return wire, err
}

// time48 is t as the hex of 48 bits, how miekg/dns holds other data.
func time48(t uint64) string {
	const hexdig = "0123456789abcdef"
	b := make([]byte, 12)
	for i := 11; i >= 0; i-- {
		b[i] = hexdig[t&0xf]
		t >>= 4
	}
	return string(b)
}
