package cache

import (
	"encoding/binary"
	"reflect"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// An answer is stored as the upstream sent it, and a hit rewrites some of
// its bytes: the header's ID and flags, and every TTL as the entry ages.
// A compression pointer (RFC 1035 §4.1.4) may point anywhere in the
// message, so a crafted message can spell a name out of those bytes: the
// name the forward stage unpacked (and a validator checked) would then
// read otherwise once the entry is served. No server packs such a
// message. stableNames tells whether msg is free of it; the cache stores
// what miekg/dns packs from the unpacked message instead of one that is
// not (see Cache.insert), and drops such bytes when they come from a
// shared store or a state file.

// rdataNames returns where the names of a record of type t lie in its
// RDATA: n names one after the other from byte at; or, with scan, that
// miekg/dns reads names somewhere in it (rdataScan) and every byte pair
// is to be followed.
func rdataNames(t uint16) (at, n int, scan bool) {
	switch t {
	case dns.TypeNS, dns.TypeMD, dns.TypeMF, dns.TypeCNAME, dns.TypeMB, dns.TypeMG,
		dns.TypeMR, dns.TypePTR, dns.TypeDNAME, dns.TypeNSEC, dns.TypeNXT:
		return 0, 1, false
	case dns.TypeSOA, dns.TypeMINFO, dns.TypeRP, dns.TypeTALINK:
		return 0, 2, false
	case dns.TypeMX, dns.TypeAFSDB, dns.TypeRT, dns.TypeKX, dns.TypeLP, dns.TypeSVCB, dns.TypeHTTPS:
		return 2, 1, false
	case dns.TypePX:
		return 2, 2, false
	case dns.TypeSRV:
		return 6, 1, false
	case dns.TypeRRSIG, dns.TypeSIG:
		return 18, 1, false
	}
	return 0, 0, int(t) < len(rdataScan) && rdataScan[t]
}

// rdataScan holds the other types (below AMTRELAY, 260, the last) whose
// RDATA miekg/dns reads a name from: HIP, NAPTR, IPSECKEY, AMTRELAY, ...
var rdataScan = func() (k [261]bool) {
	for t, mk := range dns.TypeToRR {
		if int(t) >= len(k) {
			continue
		}
		rv := reflect.TypeOf(mk()).Elem()
		for i := range rv.NumField() {
			tag := rv.Field(i).Tag.Get("dns")
			if strings.Contains(tag, "domain-name") || tag == "ipsechost" || tag == "amtrelayhost" {
				k[t] = true
			}
		}
	}
	return k
}()

// rewritten holds the byte ranges of a stored message that a hit may
// change: the header, every record's TTL field (ttls, ascending) and
// the OPT record, its owner included (a reply to a client goes with the
// listener's OPT in its place, see clientCopy).
type rewritten struct {
	ttls             []uint16
	optStart, optEnd int // equal: no OPT
}

// overlaps reports whether [pos, pos+n) meets a rewritten byte.
func (r *rewritten) overlaps(pos, n int) bool {
	end := pos + n
	if pos < headerLen || pos < r.optEnd && end > r.optStart {
		return true
	}
	// The first TTL field that ends after pos.
	i, _ := slices.BinarySearch(r.ttls, uint16(min(max(pos-3, 0), 0xFFFF)))
	return i < len(r.ttls) && int(r.ttls[i]) < end
}

// maxHops bounds the pointers followed for one name; miekg/dns gives up
// well before (a name has at most 127 labels).
const maxHops = 255

// name walks the name at pos and reports whether any byte it reads,
// where it lies or where its pointers lead, is rewritten, and where the
// name ends where it lies. A name miekg/dns could not read (a bad label
// type, past the end, a loop) is not one: false.
func (r *rewritten) name(msg []byte, pos int) (bad bool, end int) {
	end = -1 // set at the first pointer
	done := func(at int) int {
		if end >= 0 {
			return end
		}
		return at
	}
	for hops := 0; ; {
		if pos >= len(msg) {
			return false, done(len(msg))
		}
		c := msg[pos]
		switch c & 0xC0 {
		case 0x00:
			n := 1 + int(c)
			if pos+n > len(msg) {
				return false, done(len(msg))
			}
			if r.overlaps(pos, n) {
				return true, 0
			}
			if pos += n; c == 0 {
				return false, done(pos)
			}
		case 0xC0:
			if pos+2 > len(msg) {
				return false, done(len(msg))
			}
			if r.overlaps(pos, 2) {
				return true, 0
			}
			if end < 0 {
				end = pos + 2
			}
			if hops++; hops > maxHops {
				return false, end
			}
			pos = int(c&0x3F)<<8 | int(msg[pos+1])
		default:
			return false, done(len(msg))
		}
	}
}

// scan reports whether any byte pair of msg[from:to] that has a pointer's
// form leads to a name reading rewritten bytes. It does not know where
// the names are, so it follows every such pair: a pair that is no pointer
// rarely leads to one, and costs at most a repack.
func (r *rewritten) scan(msg []byte, from, to int) bool {
	for i := from; i+1 < to; i++ {
		if msg[i]&0xC0 != 0xC0 {
			continue
		}
		if bad, _ := r.name(msg, int(msg[i]&0x3F)<<8|int(msg[i+1])); bad {
			return true
		}
	}
	return false
}

// stableNames reports whether no name of msg, a message ttlOffsets walked
// into ttls, reads a byte that a hit rewrites (see above). A message with
// more than one OPT is not stable either.
func stableNames(msg []byte, ttls []uint16) bool {
	r := rewritten{ttls: ttls}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	rrs := int(binary.BigEndian.Uint16(msg[6:])) +
		int(binary.BigEndian.Uint16(msg[8:])) +
		int(binary.BigEndian.Uint16(msg[10:]))
	// OPT first: a name before it may point into it. ttlOffsets checked
	// that every record's fixed fields and RDATA lie within msg.
	off := headerLen
	for range qd {
		off, _ = skipName(msg, off)
		off += 4
	}
	records := off
	for range rrs {
		end, _ := skipName(msg, off)
		next := end + 10 + int(binary.BigEndian.Uint16(msg[end+8:]))
		if binary.BigEndian.Uint16(msg[end:]) == dns.TypeOPT {
			if r.optEnd != 0 {
				return false
			}
			r.optStart, r.optEnd = off, next
		}
		off = next
	}
	off = headerLen
	for range qd {
		bad, end := r.name(msg, off)
		if bad {
			return false
		}
		off = end + 4
	}
	off = records
	for range rrs {
		var bad bool
		var end int
		if off == r.optStart && r.optEnd != 0 {
			// OPT's owner goes with it: every reply has the
			// listener's OPT in its place.
			end, _ = skipName(msg, off)
		} else if bad, end = r.name(msg, off); bad {
			return false
		}
		typ := binary.BigEndian.Uint16(msg[end:])
		rdata := end + 10
		next := rdata + int(binary.BigEndian.Uint16(msg[end+8:]))
		switch at, n, scan := rdataNames(typ); {
		case scan:
			if r.scan(msg, rdata, next) {
				return false
			}
		case n > 0:
			for pos := rdata + at; n > 0 && pos < next; n-- {
				if bad, pos = r.name(msg, pos); bad {
					return false
				}
			}
		}
		off = next
	}
	return true
}
