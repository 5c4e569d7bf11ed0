package cache

import (
	"encoding/binary"
	"slices"

	"github.com/miekg/dns"
)

// A template is an entry's answer unpacked once for one age: TTLs lowered
// by that many seconds (or all set to StaleTTL, with EDE 3, for staleAge),
// the question as spelled by the query that made it, ID 0. Hits at that
// age with that spelling are answered with a shallow copy of msg that
// shares its sections and records: nobody may modify them (replies are
// read-only, see pipeline.Handler). A template is never modified once
// published.
type template struct {
	age   uint32
	qname string // the question name in wire format, as spelled
	msg   *dns.Msg
	// wire is msg as a client gets it, ready to send but for the ID,
	// the header bits of the query and the client's OPT (see
	// pipeline.CachedReply); nil when msg cannot go that way.
	wire []byte
	// fail, when not nil, is the failure a cached failure answers with
	// (see Cache.insertFailure); the template has no message then.
	fail error
}

// staleAge is the age of the template of stale answers: every TTL is
// StaleTTL whatever the age, so one template serves them all. Fresh ages
// are below an entry's TTL, at most 2^31-1.
const staleAge = ^uint32(0)

// Estimated heap cost of a template beyond the packed message: the Msg
// and template structs and slices, and per record its struct, header and
// interface slot (measured with miekg/dns v1.1.73 on typical answers; an
// over-estimate for most).
const (
	templateOverhead  = 256
	templateRecordLen = 96
)

// templateSize estimates the bytes a template of the packed message msg
// holds: the records unpacked, and the message packed once more for
// clients.
func templateSize(msg []byte) int64 {
	records := 0
	if len(msg) >= headerLen {
		records = int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) +
			int(binary.BigEndian.Uint16(msg[10:]))
	}
	return templateOverhead + 2*int64(len(msg)) + templateRecordLen*int64(records)
}

// clientWire packs m, a template's message, as every client gets it but
// for the header bits of its query and its OPT: names compressed, ID 0,
// no OPT record (see pipeline.CachedReply). It returns nil when m cannot
// go that way: its OPT carries an Extended DNS Error (clients get those,
// in an OPT of the listener's), it has more than one OPT or a TSIG, or
// its RCODE needs an OPT.
func clientWire(m *dns.Msg) []byte {
	if m.Rcode > 0xF {
		return nil
	}
	extra, opts := m.Extra, 0
	for i, rr := range m.Extra {
		switch rr := rr.(type) {
		case *dns.OPT:
			for _, o := range rr.Option {
				if o.Option() == dns.EDNS0EDE {
					return nil
				}
			}
			if opts++; opts > 1 {
				return nil
			}
			extra = slices.Delete(slices.Clone(m.Extra), i, i+1)
		case *dns.TSIG:
			return nil
		}
	}
	c := *m
	c.Id, c.Extra, c.Compress = 0, extra, true
	b, err := c.Pack()
	if err != nil {
		return nil
	}
	return b
}

// answer returns the answer to q from e, aged by age seconds, or nil when
// the stored bytes do not unpack (then e is dropped); with it, when the
// answer is its entry's template, the template's wire form for clients
// (see clientWire; nil otherwise). A stale answer has
// every TTL set to StaleTTL and carries EDE 3 (RFC 8767 §4, RFC 8914).
//
// The answer is read-only: it shares its sections and records with the
// other answers from e at the same age (see template). Only its header
// and section slices are its own. A hit allocates only the Msg struct,
// except when e's template is for another age (once a second per entry:
// concurrent hits may all rebuild it, the last one stays) or another
// spelling of the name (then the answer is unpacked for this query only,
// so that a client that randomises case cannot push out the template of
// the others).
func (c *Cache) answer(s *shard, e *entry, age uint32, qname []byte, q *dns.Msg, stale bool) (*dns.Msg, []byte) {
	if stale {
		age = staleAge
	}
	t := e.tmpl.Load()
	switch {
	case t != nil && t.age == age && t.qname == string(qname):
	case t == nil || t.age != age:
		m, err := c.unpackAnswer(e, age, qname)
		if err != nil {
			// Only a bug in packing or patching gets here: drop the
			// entry rather than serve it again.
			s.remove(e)
			return nil, nil
		}
		t = &template{age: age, qname: string(qname), msg: m, wire: clientWire(m)}
		s.keepTemplate(e, t)
	default:
		m, err := c.unpackAnswer(e, age, qname)
		if err != nil {
			s.remove(e)
			return nil, nil
		}
		setHeader(m, e, q)
		return m, nil
	}
	m := new(dns.Msg)
	*m = *t.msg
	setHeader(m, e, q)
	return m, t.wire
}

// setHeader gives m, an answer from e to the query q, the header bits
// that belong to the query: its ID, RD and CD (RFC 4035 §3.1.6), and AD
// when e is authentic and q had DO or AD (RFC 6840 §5.8), whatever the
// stored header says: the query that filled e may have asked otherwise.
func setHeader(m *dns.Msg, e *entry, q *dns.Msg) {
	m.Id, m.RecursionDesired, m.CheckingDisabled = q.Id, q.RecursionDesired, q.CheckingDisabled
	m.AuthenticatedData = e.authentic && wantsAD(q)
}

// unpackAnswer unpacks e's message aged by age seconds (or stale, for
// staleAge) with the question spelled as qname, ID 0 and RD clear. Its
// sections and OPT options have no spare capacity, so that an append by
// whoever gets a shallow copy cannot write into memory shared with
// another answer.
func (c *Cache) unpackAnswer(e *entry, age uint32, qname []byte) (*dns.Msg, error) {
	bp := c.bufs.Get().(*[]byte)
	var b []byte
	if age == staleAge {
		b = e.appendAnswer((*bp)[:0], 0, 0, false, qname)
		setTTLs(b, e.ttls(), c.staleTTL)
	} else {
		b = e.appendAnswer((*bp)[:0], age, 0, false, qname)
	}
	m := new(dns.Msg)
	err := m.Unpack(b)
	*bp = b
	c.bufs.Put(bp)
	if err != nil {
		return nil, err
	}
	if age == staleAge {
		addEDE(m, dns.ExtendedErrorCodeStaleAnswer, "")
	}
	// Packed for a client with its names compressed, as they were
	// stored: unpacking does not say so, and an answer packed without
	// would be longer, and truncated sooner, than the upstream's.
	m.Compress = true
	m.Question = slices.Clip(m.Question)
	m.Answer = slices.Clip(m.Answer)
	m.Ns = slices.Clip(m.Ns)
	m.Extra = slices.Clip(m.Extra)
	if opt := m.IsEdns0(); opt != nil {
		opt.Option = slices.Clip(opt.Option)
	}
	return m, nil
}

// keepTemplate makes t e's template if e is still stored. The first
// template of an entry counts against the shard's byte bound (evicting
// least recently used entries other than e to make room); later ones
// replace it at the same estimated cost. A template that does not fit is
// not kept: hits on e then unpack their answer each time.
func (s *shard) keepTemplate(e *entry, t *template) {
	if e.tmpl.Load() != nil {
		e.tmpl.Store(t)
		return
	}
	size := templateSize(e.msg())
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.holds(e) {
		return
	}
	if e.tmplSize == 0 {
		for s.bytes.Load()+size > s.maxBytes && s.lru.prev != &s.lru && s.lru.prev != e {
			s.removeLocked(s.lru.prev)
			s.evictions.Add(1)
		}
		if s.bytes.Load()+size > s.maxBytes {
			return
		}
		e.tmplSize = int32(size)
		s.bytes.Add(size)
	}
	e.tmpl.Store(t)
}
