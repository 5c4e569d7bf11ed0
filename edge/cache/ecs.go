package cache

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// ECS-scoped entries (RFC 7871 §7.3.1). A query forwarded with a client
// subnet (req.ECS, SOURCE PREFIX-LENGTH s) is keyed by that prefix while
// it is in flight. Its answer is stored under the prefix its SCOPE
// PREFIX-LENGTH names: the client address masked to the scope, so that
// every client inside the scope shares the entry. A scope of 0, or an
// answer without an ECS option, covers every client and is stored under
// the key without ECS, the one queries without a subnet use as well. A
// scope longer than the source is cut to the source (§7.3.1: the answer
// cannot be more specific than the question).
//
// A lookup with source length s tries, longest first, every prefix length
// up to s that some stored answer was scoped to (a few in practice), then
// the key without ECS.

// ecsOff returns the offset in key of its ECS part (prefix length byte,
// then 16 address bytes), or -1 when the key has none. nameLen is the
// length of the wire name the key starts with.
func ecsOff(key []byte, nameLen int) int {
	if key[nameLen+4]&keyECS == 0 {
		return -1
	}
	return nameLen + 5
}

// rescope appends to dst key with its ECS prefix cut to bits: the address
// masked, the length replaced; with bits 0, the key without ECS.
func rescope(dst, key []byte, nameLen, bits int) []byte {
	off := nameLen + 5
	if bits == 0 {
		dst = append(dst, key[:nameLen+4]...)
		dst = append(dst, key[nameLen+4]&^(keyECS|keyV4))
		return append(dst, key[off+17:]...)
	}
	var a [16]byte
	copy(a[:], key[off+1:off+17])
	addr := netip.AddrFrom16(a)
	if key[nameLen+4]&keyV4 != 0 {
		addr = addr.Unmap()
	}
	p, _ := addr.Prefix(bits)
	dst = append(dst, key[:off]...)
	dst = append(dst, byte(bits))
	a = p.Addr().As16()
	dst = append(dst, a[:]...)
	return append(dst, key[off+17:]...)
}

// scopes records, per address family, the prefix lengths answers have
// been stored under: bit n of word n/64 for length n.
type scopes [2][3]atomic.Uint64

func (sc *scopes) add(v4 bool, bits int) {
	w := &sc[fam(v4)][bits/64]
	if m := uint64(1) << (bits % 64); w.Load()&m == 0 {
		w.Or(m)
	}
}

func (sc *scopes) has(v4 bool, bits int) bool {
	return sc[fam(v4)][bits/64].Load()&(1<<(bits%64)) != 0
}

func fam(v4 bool) int {
	if v4 {
		return 0
	}
	return 1
}

// storeKey returns the key reply is stored under for a query keyed key
// (see above), and false when reply must not be cached: its ECS option
// names another family than the query's.
func (c *Cache) storeKey(dst, key []byte, nameLen int, reply *dns.Msg) ([]byte, bool) {
	off := ecsOff(key, nameLen)
	if off < 0 {
		return key, true
	}
	v4 := key[nameLen+4]&keyV4 != 0
	source := int(key[off])
	scope := 0
	if opt := reply.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			sub, ok := o.(*dns.EDNS0_SUBNET)
			if !ok {
				continue
			}
			if (sub.Family == 1) != v4 {
				return nil, false
			}
			scope = min(int(sub.SourceScope), source)
		}
	}
	if scope > 0 {
		c.scopes.add(v4, scope)
	}
	return rescope(dst, key, nameLen, scope), true
}

// lookup finds the entry that answers a query keyed key, whose shard is
// s: the key itself when it has no ECS part, otherwise the most specific
// scoped entry that covers the query's subnet (see above). It returns the
// entry's shard with it.
func (c *Cache) lookup(s *shard, h uint64, key []byte, nameLen int, now time.Time) (*shard, *entry, uint32, state) {
	off := ecsOff(key, nameLen)
	if off < 0 {
		e, age, st := s.get(h, key, now)
		return s, e, age, st
	}
	v4 := key[nameLen+4]&keyV4 != 0
	var buf [keyStack]byte
	for bits := int(key[off]); bits > 0; bits-- {
		if !c.scopes.has(v4, bits) {
			continue
		}
		k := rescope(buf[:0], key, nameLen, bits)
		ks, kh := c.locate(k)
		if e, age, st := ks.get(kh, k, now); e != nil {
			return ks, e, age, st
		}
	}
	k := rescope(buf[:0], key, nameLen, 0)
	ks, kh := c.locate(k)
	e, age, st := ks.get(kh, k, now)
	return ks, e, age, st
}
