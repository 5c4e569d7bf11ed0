package cache

import (
	"encoding/binary"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/dnswire"
)

// Flag bits in the key byte that follows QTYPE and QCLASS.
const (
	keyDO   = 1 << iota // DNSSEC OK (RFC 3225)
	keyCD               // Checking Disabled (RFC 4035 §3.2.2)
	keyECS              // an ECS prefix follows
	keyV4               // the ECS prefix is IPv4
	keyTags             // the query's tags follow
)

// maxWireName is the longest name in wire format (RFC 1035 §3.1).
const maxWireName = dnswire.MaxName

// keyStack sizes the buffers that hold a name and a key on the stack: any
// key without a route fits.
const keyStack = maxWireName + 4 + 1 + 1 + 16 + 64

// cacheable reports whether the answer to q may come from the cache: a
// standard query (opcode QUERY) with exactly one question that is not a
// zone transfer. Other queries go to the next handler untouched.
func cacheable(q *dns.Msg) bool {
	if q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 {
		return false
	}
	switch q.Question[0].Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		return false
	}
	return true
}

// appendKey appends to dst the cache key of req and returns it together
// with the query's name in wire format, in its original case, written into
// name (which should have room for maxWireName bytes).
//
// The key is: the lower-cased wire name (RFC 4343), QTYPE, QCLASS, a flag
// byte (DO, CD), then the ECS prefix the query will be forwarded with, the
// tags it carries upstream (their count, then each after its length, in
// two bytes each), and last the route. Answers can differ by ECS
// prefix (RFC 7871), by tags (upstreams may answer by them) and by route
// (each route forwards to its own group), so all keep entries apart; with
// none set the key is just the question and the two bits. The wire name
// is self-delimiting, so the key needs no separators.
//
// ok is false when the name cannot be packed (not fully qualified, too
// long): such queries bypass the cache.
func appendKey(dst, name []byte, req *pipeline.Request) (key, wname []byte, ok bool) {
	q := req.Msg.Question[0]
	if q.Name == "" {
		return dst, nil, false
	}
	n, ok := dnswire.PackName(q.Name, name[:cap(name)])
	if !ok {
		var err error
		if n, err = dns.PackDomainName(q.Name, name[:cap(name)], 0, nil, false); err != nil {
			return dst, nil, false
		}
	}
	wname = name[:n]
	for _, c := range wname {
		dst = append(dst, lower(c))
	}
	dst = binary.BigEndian.AppendUint16(dst, q.Qtype)
	dst = binary.BigEndian.AppendUint16(dst, q.Qclass)
	var flags byte
	if opt := req.Msg.IsEdns0(); opt != nil && opt.Do() {
		flags |= keyDO
	}
	if req.Msg.CheckingDisabled {
		flags |= keyCD
	}
	ecs := req.ECS
	if ecs.IsValid() {
		flags |= keyECS
		if ecs.Addr().Is4() {
			flags |= keyV4
		}
	}
	if len(req.Tags) > 0 {
		flags |= keyTags
	}
	dst = append(dst, flags)
	if ecs.IsValid() {
		ecs = ecs.Masked()
		a := ecs.Addr().As16()
		dst = append(dst, byte(ecs.Bits()))
		dst = append(dst, a[:]...)
	}
	if len(req.Tags) > 0 {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(req.Tags)))
		for _, t := range req.Tags {
			dst = binary.BigEndian.AppendUint16(dst, uint16(len(t)))
			dst = append(dst, t...)
		}
	}
	return append(dst, req.Route...), wname, true
}
