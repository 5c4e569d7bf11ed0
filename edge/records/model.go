package records

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/zone"
)

// RRset is the records of one type at one name, as the API shows them:
// name a lower-case FQDN, type its mnemonic, contents in master file
// syntax.
type RRset struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	TTL     uint32   `json:"ttl"`
	Records []Record `json:"records"`
}

// Record is one record of an RRset: its RDATA in master file syntax.
type Record struct {
	Content string `json:"content"`
}

// Snapshot is a zone's whole state: what GET shows and what a store keeps.
// Seq counts the changes since the zone was created (the journal's
// order); Serial is the SOA serial, which wraps.
type Snapshot struct {
	Origin string  `json:"origin"`
	Seq    uint64  `json:"seq"`
	Serial uint32  `json:"serial"`
	RRsets []RRset `json:"rrsets"`
}

// setKey names an RRset: lower-case FQDN and type.
type setKey struct {
	name string
	typ  uint16
}

// rrset is an RRset as kept in memory: the parsed records, one TTL.
type rrset struct {
	ttl uint32
	rrs []dns.RR
}

// version is a zone at one serial. It is never modified once published.
type version struct {
	origin string
	seq    uint64
	serial uint32
	sets   map[setKey]rrset
	zone   *zone.Zone
}

// SOA fields of every API zone; the serial is the version's.
const (
	soaTTL     = zone.DefaultTTL
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
	soaMinimum = 60
)

func (v *version) soa() *dns.SOA {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: v.origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: soaTTL},
		Ns:  "localhost.", Mbox: "hostmaster." + strings.TrimPrefix(v.origin, "."),
		Serial: v.serial, Refresh: soaRefresh, Retry: soaRetry, Expire: soaExpire, Minttl: soaMinimum,
	}
}

// keys returns v's RRset keys sorted by name, then type.
func (v *version) keys() []setKey {
	out := make([]setKey, 0, len(v.sets))
	for k := range v.sets {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b setKey) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.typ, b.typ))
	})
	return out
}

// rrs returns the records of v, the SOA first, then by keys; index maps
// the position of each record back to its key and record number.
func (v *version) rrs() (out []dns.RR, index []recordAt) {
	out = append(out, v.soa())
	index = append(index, recordAt{key: setKey{v.origin, dns.TypeSOA}})
	for _, k := range v.keys() {
		for i, rr := range v.sets[k].rrs {
			c := dns.Copy(rr)
			c.Header().Ttl = v.sets[k].ttl
			out = append(out, c)
			index = append(index, recordAt{key: k, n: i})
		}
	}
	return out, index
}

type recordAt struct {
	key setKey
	n   int
}

// build makes v.zone from v's records. A problem is returned as a
// *zone.RecordError list mapped by the caller.
func (v *version) build() ([]recordAt, error) {
	rrs, index := v.rrs()
	z, err := zone.FromRRs(v.origin, rrs)
	if err != nil {
		return index, err
	}
	v.zone = z
	return index, nil
}

// Snapshot returns v as the API shows it, the SOA first.
func (v *version) snapshot() Snapshot {
	s := Snapshot{Origin: v.origin, Seq: v.seq, Serial: v.serial}
	s.RRsets = append(s.RRsets, RRset{Name: v.origin, Type: "SOA", TTL: soaTTL, Records: []Record{{content(v.soa())}}})
	for _, k := range v.keys() {
		s.RRsets = append(s.RRsets, v.sets[k].view(k))
	}
	return s
}

func (s rrset) view(k setKey) RRset {
	out := RRset{Name: k.name, Type: dns.TypeToString[k.typ], TTL: s.ttl, Records: make([]Record, len(s.rrs))}
	for i, rr := range s.rrs {
		out.Records[i] = Record{content(rr)}
	}
	return out
}

// content returns the RDATA of rr in master file syntax.
func content(rr dns.RR) string {
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// emptyVersion is a zone never changed: serial 1, the SOA alone.
func emptyVersion(origin string) *version {
	return &version{origin: origin, serial: 1, sets: make(map[setKey]rrset)}
}

// fromSnapshot rebuilds a version from a store's snapshot, parsing every
// record again with the checks of a change.
func fromSnapshot(origin string, s Snapshot, maxTTL uint32) (*version, error) {
	v := &version{origin: origin, seq: s.Seq, serial: s.Serial, sets: make(map[setKey]rrset)}
	for i, set := range s.RRsets {
		if strings.EqualFold(set.Type, "SOA") {
			continue
		}
		c := Change{Name: set.Name, Type: set.Type, TTL: ptr(int64(set.TTL)), Changetype: ChangeReplace, Records: set.Records}
		k, rs, err := c.parse(origin, maxTTL, at(i))
		if err != nil {
			return nil, fmt.Errorf("snapshot of %s: %w", origin, err)
		}
		v.sets[k] = rs
	}
	if _, err := v.build(); err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", origin, err)
	}
	return v, nil
}

func ptr[T any](v T) *T { return &v }

// nextSerial returns the serial after s (RFC 1982), never 0.
func nextSerial(s uint32) uint32 {
	if s == 1<<32-1 {
		return 1
	}
	return s + 1
}

// errNoChange marks a change that leaves the zone as it was.
var errNoChange = errors.New("no change")
