package canary

import (
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Diff is how two answers to the same query differ structurally, as a set
// of flags; zero means they agree. Answers agree when they have the same
// RCODE, the same kind (answer, NXDOMAIN, NODATA), the same TC and AD
// bits, the same set of RRsets in the answer and authority sections (by
// owner and type), and for each RRset the same set of canonical RDATA.
// What two correct resolutions may differ in is ignored: the message ID,
// TTLs, the order of records and sections, the additional section, SOA
// serials, and the bytes of RRSIG records (a signature's presence for an
// owner and type covered is compared, not its value).
type Diff uint8

// Diff flags.
const (
	DiffRcode  Diff = 1 << iota // RCODE differs
	DiffKind                    // answer, NXDOMAIN or NODATA differs (RFC 2308)
	DiffTC                      // TC bit differs
	DiffAD                      // AD bit differs
	DiffRRsets                  // the sets of RRsets (owner, type) differ
	DiffRdata                   // an RRset present in both holds other RDATA
)

var diffNames = []string{"rcode", "kind", "tc", "ad", "rrsets", "rdata"}

// Names returns the names of the flags set, in a fixed order.
func (d Diff) Names() []string {
	var out []string
	for i, n := range diffNames {
		if d&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func (d Diff) String() string {
	if d == 0 {
		return "same"
	}
	return strings.Join(d.Names(), "+")
}

// Kind classifies an answer (RFC 2308): NXDOMAIN, NODATA (NOERROR with
// nothing for the question's name and type), an answer, or another
// RCODE ("rcode").
func Kind(m *dns.Msg) string {
	switch m.Rcode {
	case dns.RcodeNameError:
		return "nxdomain"
	case dns.RcodeSuccess:
	default:
		return "rcode"
	}
	var q dns.Question
	if len(m.Question) > 0 {
		q = m.Question[0]
	}
	for _, rr := range m.Answer {
		h := rr.Header()
		if q.Qtype == dns.TypeANY || h.Rrtype == q.Qtype || h.Rrtype == dns.TypeCNAME || h.Rrtype == dns.TypeDNAME {
			return "answer"
		}
	}
	return "nodata"
}

// Compare returns how b differs from a. A nil message stands for a
// failure (no answer): it differs from any answer by its RCODE, taken as
// SERVFAIL.
func Compare(a, b *dns.Msg) Diff {
	a, b = orServfail(a), orServfail(b)
	var d Diff
	if a.Rcode != b.Rcode {
		d |= DiffRcode
	}
	if Kind(a) != Kind(b) {
		d |= DiffKind
	}
	if a.Truncated != b.Truncated {
		d |= DiffTC
	}
	if a.AuthenticatedData != b.AuthenticatedData {
		d |= DiffAD
	}
	sa, sb := rrsets(a), rrsets(b)
	if len(sa) != len(sb) {
		d |= DiffRRsets
	}
	for k, ra := range sa {
		rb, ok := sb[k]
		if !ok {
			d |= DiffRRsets
			continue
		}
		if !slices.Equal(ra, rb) {
			d |= DiffRdata
		}
	}
	return d
}

func orServfail(m *dns.Msg) *dns.Msg {
	if m != nil {
		return m
	}
	return &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeServerFailure}}
}

// rrsetKey is an RRset's identity: owner (lower case), type, and for
// RRSIG the type covered, since RRSIGs of different RRsets at one owner
// are different sets.
type rrsetKey struct {
	owner   string
	rrtype  uint16
	covered uint16
}

// rrsets returns the answer and authority sections as sets of canonical
// RDATA by RRset, each sorted and without duplicates.
func rrsets(m *dns.Msg) map[rrsetKey][]string {
	out := make(map[rrsetKey][]string)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			k := rrsetKey{owner: strings.ToLower(h.Name), rrtype: h.Rrtype}
			rd := ""
			switch v := rr.(type) {
			case *dns.RRSIG:
				k.covered = v.TypeCovered
			case *dns.SOA:
				s := *v
				s.Serial = 0
				rd = rdata(&s)
			default:
				rd = rdata(rr)
			}
			out[k] = append(out[k], rd)
		}
	}
	for k, v := range out {
		slices.Sort(v)
		out[k] = slices.Compact(v)
	}
	return out
}

// rdata returns rr's RDATA in presentation form, names in lower case
// (RFC 4034 §6.2) except in types whose text is data.
func rdata(rr dns.RR) string {
	s := strings.TrimPrefix(rr.String(), rr.Header().String())
	switch rr.Header().Rrtype {
	case dns.TypeTXT, dns.TypeSPF, dns.TypeCAA, dns.TypeHINFO:
		return s
	}
	return strings.ToLower(s)
}
