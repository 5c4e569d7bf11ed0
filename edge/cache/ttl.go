package cache

import (
	"encoding/binary"
	"math"

	"github.com/miekg/dns"
)

// lifetime returns how many seconds m may be served from the cache, 0 when
// it must not be cached:
//
//   - truncated answers (RFC 2181 §9), answers to other opcodes and RCODEs
//     other than the ones below are never cached;
//   - NOERROR with answers: the smallest TTL over answer and authority
//     records, clamped to [MinTTL, MaxTTL];
//   - NXDOMAIN, and NOERROR without answers (NODATA): min(SOA TTL, SOA
//     MINIMUM) of the SOA in authority (RFC 2308 §5), lowered further by
//     any answer record (a CNAME chain that ends in the denial), clamped to
//     [MinTTL, NegativeTTL]; without an SOA, not cached (RFC 2308 §5:
//     such answers SHOULD NOT be cached);
//   - SERVFAIL: ServfailTTL, 0 unless configured (RFC 2308 §7.1).
//
// A record TTL of 0 means "use only for this transaction" (RFC 1035
// §3.2.1): such an answer is not cached, whatever MinTTL says.
func (c *Cache) lifetime(m *dns.Msg) uint32 {
	if m.Truncated || m.Opcode != dns.OpcodeQuery {
		return 0
	}
	switch m.Rcode {
	case dns.RcodeSuccess:
		if len(m.Answer) > 0 {
			t := minTTL(math.MaxUint32, m.Answer)
			t = minTTL(t, m.Ns)
			return clamp(t, c.minTTL, c.maxTTL)
		}
		return c.negativeLifetime(m)
	case dns.RcodeNameError:
		return c.negativeLifetime(m)
	case dns.RcodeServerFailure:
		return c.servfailTTL
	}
	return 0
}

func (c *Cache) negativeLifetime(m *dns.Msg) uint32 {
	var soa *dns.SOA
	for _, rr := range m.Ns {
		if s, ok := rr.(*dns.SOA); ok {
			soa = s
			break
		}
	}
	if soa == nil {
		return 0
	}
	t := min(ttlValue(soa.Hdr.Ttl), ttlValue(soa.Minttl))
	t = minTTL(t, m.Answer)
	return clamp(t, c.minTTL, c.negativeTTL)
}

// minTTL returns the smallest of t and the TTLs of rrs, OPT excluded.
func minTTL(t uint32, rrs []dns.RR) uint32 {
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == dns.TypeOPT {
			continue
		}
		t = min(t, ttlValue(h.Ttl))
	}
	return t
}

// clamp bounds t to [lo, hi], hi winning when lo > hi; 0 stays 0.
func clamp(t, lo, hi uint32) uint32 {
	if t == 0 {
		return 0
	}
	return min(max(t, lo), hi)
}

// ttlValue reads a TTL as RFC 2181 §8 says: a value with the top bit set
// is treated as zero.
func ttlValue(t uint32) uint32 {
	if t > math.MaxInt32 {
		return 0
	}
	return t
}

// clampTTLs rewrites every TTL field of the packed message msg to lie in
// [minTTL, ttl], ttl being the entry's lifetime, so that no record is
// served with a TTL longer than the cache will keep it.
func (c *Cache) clampTTLs(msg []byte, offs []uint16, ttl uint32) {
	for _, off := range offs {
		p := msg[off : off+4]
		t := min(max(ttlValue(binary.BigEndian.Uint32(p)), c.minTTL), ttl)
		binary.BigEndian.PutUint32(p, t)
	}
}
