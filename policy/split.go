package policy

import "net/netip"

// Split modes.
const (
	splitPercent = iota + 1
	splitWeights
	splitWhitelist
)

// split is a checked split.
type split struct {
	mode         int
	seed         string
	seedHash     uint64 // the hash of seed and its separator
	v4Hash       uint64 // seedHash, 'a' and an IPv4-mapped address's first 12 bytes
	canary, base string
	// threshold: a percent split sends a client to canary when its hash
	// modulo 10000 is below it.
	threshold uint64
	// groups, cum and total: a weight split walks the cumulative weights
	// of groups, sorted by name, with the hash modulo total.
	groups []string
	cum    []uint64
	total  uint64
	white  Table[struct{}]
}

// group returns the group in goes to.
func (s *split) group(in *Input, sticky string) string {
	switch s.mode {
	case splitWhitelist:
		if _, ok := s.white.Lookup(in.ClientID, in.Source); ok {
			return s.canary
		}
		return s.base
	case splitPercent:
		if s.hash(in, sticky)%10000 < s.threshold {
			return s.canary
		}
		return s.base
	}
	h := s.hash(in, sticky) % s.total
	for i, c := range s.cum {
		if h < c {
			return s.groups[i]
		}
	}
	return s.groups[len(s.groups)-1] // not reached: h < total
}

// hash hashes the client's sticky key with the split's seed: FNV-1a 64
// over the seed, a separator, the kind of key and the key, then the
// finalizer of MurmurHash3 so that every bit of the result depends on
// every bit of the input (FNV alone leaves the low bits, which the modulo
// uses, weak). It depends on nothing but the seed and the query, so that
// every instance, before and after any reload, puts a client on the same
// side. An address is hashed in its 16-byte form; for an IPv4 source the
// hash of everything before its last four bytes is the same for every
// query (v4Hash).
func (s *split) hash(in *Input, sticky string) uint64 {
	h := s.seedHash
	switch {
	case sticky == StickyClientID && in.ClientID != "":
		h = fnvString(fnvByte(h, 'i'), in.ClientID)
	case sticky == StickyECS && in.ECS.IsValid():
		p := normalize(in.ECS)
		h = fnvAddr(fnvByte(h, 'e'), p.Addr())
		h = fnvByte(h, byte(p.Bits()))
	default:
		a := in.Source.Unmap()
		if a.Is4() {
			b := a.As4()
			h = fnvByte(fnvByte(fnvByte(fnvByte(s.v4Hash, b[0]), b[1]), b[2]), b[3])
		} else {
			h = fnvAddr(fnvByte(h, 'a'), a.WithZone(""))
		}
	}
	return fmix64(h)
}

// setSeed sets the split's seed and the hashes every query starts
// from.
func (s *split) setSeed(seed string) {
	s.seed = seed
	s.seedHash = fnvByte(fnvString(fnvOffset, seed), 0)
	h := fnvByte(s.seedHash, 'a')
	for _, c := range [12]byte{10: 0xff, 11: 0xff} {
		h = fnvByte(h, c)
	}
	s.v4Hash = h
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvByte(h uint64, b byte) uint64 { return (h ^ uint64(b)) * fnvPrime }

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = fnvByte(h, s[i])
	}
	return h
}

// fnvAddr hashes the 16-byte form of a (IPv4 as IPv4-mapped), or one zero
// byte for the zero Addr.
func fnvAddr(h uint64, a netip.Addr) uint64 {
	if !a.IsValid() {
		return fnvByte(h, 0)
	}
	b := a.As16()
	for _, c := range b {
		h = fnvByte(h, c)
	}
	return h
}

// fmix64 is MurmurHash3's 64-bit finalizer.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
