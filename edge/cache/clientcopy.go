package cache

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// clientCopy returns a copy of wire, the bytes of reply as the upstream
// sent them, ready for a client as a hit's template is (see
// pipeline.CachedReply): the upstream's OPT record cut off and ARCOUNT
// lowered for it. The listener writes the query's ID, the header bits and
// its own OPT, instead of packing reply. The copy is made before insert
// clears the ID and clamps the TTLs, so the client gets the TTLs reply
// has.
//
// wire has been walked by ttlOffsets and passed stableNames: no name
// reads the header or the OPT record, which the listener rewrites and
// cuts. It returns nil when reply cannot go that way: an RCODE that
// needs an OPT, an OPT that carries an Extended DNS Error (the listener
// passes those on in an OPT of its own), an OPT that is not the last
// record or not in the additional section, a TSIG record, or bytes after
// the last record (a name may point into them).
func clientCopy(wire []byte, reply *dns.Msg) []byte {
	if reply.Rcode > 0xF {
		return nil
	}
	if opt := reply.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if o.Option() == dns.EDNS0EDE {
				return nil
			}
		}
	}
	qd := int(binary.BigEndian.Uint16(wire[4:]))
	ar := int(binary.BigEndian.Uint16(wire[10:]))
	rrs := int(binary.BigEndian.Uint16(wire[6:])) + int(binary.BigEndian.Uint16(wire[8:])) + ar
	off := headerLen
	for range qd {
		off, _ = skipName(wire, off)
		off += 4
	}
	cut := -1 // where the OPT record starts
	for i := range rrs {
		end, _ := skipName(wire, off)
		switch binary.BigEndian.Uint16(wire[end:]) {
		case dns.TypeTSIG:
			return nil
		case dns.TypeOPT:
			if i != rrs-1 || ar == 0 {
				return nil // not the additional section's last
			}
			cut = off
		}
		off = end + 10 + int(binary.BigEndian.Uint16(wire[end+8:]))
	}
	if off != len(wire) {
		return nil
	}
	if cut < 0 {
		return append([]byte(nil), wire...)
	}
	b := append([]byte(nil), wire[:cut]...)
	binary.BigEndian.PutUint16(b[10:], binary.BigEndian.Uint16(b[10:])-1)
	return b
}
