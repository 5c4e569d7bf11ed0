package policy

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"
)

// recent remembers the outcome of recent decisions by their whole input,
// for a policy of several rule shapes. A decision is a pure function of
// its input, and a resolver's queries repeat (the same client asks the
// same names): a repeated query then costs a hash of its name and one
// probe, a few cache lines, where the decision reads the indexes of
// every dimension, the memo of signatures, the rule and its split, a
// dozen lines that the rest of the query path has pushed out of the CPU's
// caches since the last query. Queries with tags or an ECS option are
// decided afresh. It is two-way set-associative, entries immutable and
// replaced whole, so it needs no lock.
type recent struct {
	seed  maphash.Seed
	slots [recentSlots]atomic.Pointer[recentEntry]
}

const (
	recentBits  = 12
	recentSlots = 1 << recentBits
)

// A recentEntry is one remembered decision: its input and outcome.
type recentEntry struct {
	source   netip.Addr
	clientID string
	qname    string
	listener string
	qtype    uint16
	d        *Decision
	group    string
}

// usable reports whether in may be looked up: it carries no tags and no
// ECS subnet.
func usable(in *Input) bool { return len(in.Tags) == 0 && !in.ECS.IsValid() }

func (r *recent) hash(in *Input) uint64 {
	h := maphash.String(r.seed, in.QName)
	a := in.Source.As16()
	lo := uint64(a[8]) | uint64(a[9])<<8 | uint64(a[10])<<16 | uint64(a[11])<<24 |
		uint64(a[12])<<32 | uint64(a[13])<<40 | uint64(a[14])<<48 | uint64(a[15])<<56
	h ^= (lo ^ uint64(in.QType)<<48 ^ uint64(len(in.Listener))<<40 ^ uint64(len(in.ClientID))) * 0x9e3779b97f4a7c15
	if len(in.Listener) > 0 {
		h ^= uint64(in.Listener[len(in.Listener)-1]) * 0xff51afd7ed558ccd
	}
	return h
}

func (e *recentEntry) is(in *Input) bool {
	return e.qtype == in.QType && e.source == in.Source && e.qname == in.QName &&
		e.listener == in.Listener && e.clientID == in.ClientID
}

// lookup returns the remembered outcome for in, ok false when there is
// none; h is r.hash(in).
func (r *recent) lookup(in *Input, h uint64) (d *Decision, group string, ok bool) {
	ways := r.slots[h>>(64-recentBits)&^1:][:2]
	for i := range ways {
		if e := ways[i].Load(); e != nil && e.is(in) {
			return e.d, e.group, true
		}
	}
	return nil, "", false
}

// remember stores the outcome of in: in a free way, else in the one the
// hash's low bit picks.
func (r *recent) remember(in *Input, h uint64, d *Decision, group string) {
	e := &recentEntry{source: in.Source, clientID: in.ClientID, qname: in.QName, listener: in.Listener, qtype: in.QType, d: d, group: group}
	ways := r.slots[h>>(64-recentBits)&^1:][:2]
	switch {
	case ways[0].Load() == nil:
		ways[0].Store(e)
	case ways[1].Load() == nil:
		ways[1].Store(e)
	default:
		ways[h&1].Store(e)
	}
}
