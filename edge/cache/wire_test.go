package cache

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"
)

// packed returns the wire form of a reply to www.example.org. A holding the
// records given as zone text, compressed.
func packed(t testing.TB, edns bool, answer, ns, extra []string) []byte {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("www.example.org.", dns.TypeA)
	m := new(dns.Msg)
	m.SetReply(q)
	m.Answer, m.Ns, m.Extra = rrs(t, answer), rrs(t, ns), rrs(t, extra)
	if edns {
		m.SetEdns0(1232, true)
	}
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTTLOffsets(t *testing.T) {
	t.Parallel()
	full := packed(t, true,
		[]string{"www.example.org. 3600 IN CNAME web.example.org.", "web.example.org. 100 IN A 192.0.2.1"},
		[]string{"example.org. 50 IN NS ns.example.org."},
		[]string{"ns.example.org. 20 IN A 192.0.2.53"})
	header := func(qd, an, ns, ar uint16, rest ...byte) []byte {
		b := make([]byte, headerLen, headerLen+len(rest))
		binary.BigEndian.PutUint16(b[4:], qd)
		binary.BigEndian.PutUint16(b[6:], an)
		binary.BigEndian.PutUint16(b[8:], ns)
		binary.BigEndian.PutUint16(b[10:], ar)
		return append(b, rest...)
	}
	// one RR: root owner, type A, class IN, TTL 7, then RDLENGTH and RDATA.
	rr := func(rdlen byte, rdata ...byte) []byte {
		return append([]byte{0, 0, 1, 0, 1, 0, 0, 0, 7, 0, rdlen}, rdata...)
	}
	tests := []struct {
		name     string
		msg      []byte
		wantTTLs []uint32
		wantErr  error
	}{
		{"compressed reply with OPT", full, []uint32{3600, 100, 50, 20}, nil},
		{"NXDOMAIN with SOA", packed(t, false, nil, []string{soa("3600", "60")}, nil), []uint32{3600}, nil},
		{"header only", header(0, 0, 0, 0), nil, nil},
		{"trailing bytes ignored", append(header(0, 1, 0, 0, rr(4, 1, 2, 3, 4)...), 0xFF, 0xFF), []uint32{7}, nil},
		{"empty rdata", header(0, 1, 0, 0, rr(0)...), []uint32{7}, nil},
		{"short header", make([]byte, 11), nil, errTruncated},
		{"missing question", header(1, 0, 0, 0), nil, errTruncated},
		{"question without type", header(1, 0, 0, 0, 0, 0, 1), nil, errTruncated},
		{"count lies", header(0, 2, 0, 0, rr(4, 1, 2, 3, 4)...), nil, errTruncated},
		{"rdata past the end", header(0, 1, 0, 0, rr(5, 1, 2, 3, 4)...), nil, errTruncated},
		{"label past the end", header(0, 1, 0, 0, 5, 'a'), nil, errTruncated},
		{"half a pointer", header(0, 1, 0, 0, 0xC0), nil, errTruncated},
		{"pointer to itself is not followed", header(1, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1), nil, nil},
		{"extended label type", header(1, 0, 0, 0, 0x41, 0, 0, 1, 0, 1), nil, errLabel},
		{"longer than a message", make([]byte, 0x10000), nil, errTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			offs, err := ttlOffsets(tt.msg, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			var got []uint32
			for _, off := range offs {
				got = append(got, binary.BigEndian.Uint32(tt.msg[off:]))
			}
			if len(got) != len(tt.wantTTLs) {
				t.Fatalf("TTLs %v, want %v", got, tt.wantTTLs)
			}
			for i := range got {
				if got[i] != tt.wantTTLs[i] {
					t.Fatalf("TTLs %v, want %v", got, tt.wantTTLs)
				}
			}
		})
	}
}

// FuzzTTLOffsets checks the wire walker against miekg/dns: it never
// panics, and on every message miekg/dns unpacks whole (header counts
// honest), it finds one TTL per record but OPT, holding that record's TTL.
// Once rewritten as a hit rewrites it, a message stableNames passes
// unpacks to the same records, and a message miekg/dns packs passes it.
// Seeds: the named messages in testdata/FuzzTTLOffsets.
func FuzzTTLOffsets(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "FuzzTTLOffsets", "*.bin"))
	if err != nil {
		f.Fatal(err)
	}
	if len(files) == 0 {
		f.Fatal("no seed corpus in testdata/FuzzTTLOffsets")
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(packed(f, true, []string{aWWW}, []string{soa("300", "60")}, nil))
	// Names read from a TTL and from the header (see TestStableNames).
	f.Add(crafted(1, 0x8180, 1, 0xC0, 25, 0, 1, 0, 1, 1, 'a', 0, 0, 0, 4, 192, 0, 2, 1))
	f.Add(crafted(0x0161, 0x0000, 1, 0xC0, 0, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		offs, werr := ttlOffsets(b, nil)
		if werr == nil {
			for _, off := range offs {
				if int(off)+4 > len(b) {
					t.Fatalf("offset %d past the end (%d bytes)", off, len(b))
				}
			}
		}
		m := new(dns.Msg)
		if m.Unpack(b) != nil || len(b) > 0xFFFF {
			return
		}
		counts := [4]int{len(m.Question), len(m.Answer), len(m.Ns), len(m.Extra)}
		for i, n := range counts {
			if int(binary.BigEndian.Uint16(b[4+2*i:])) != n {
				return // miekg/dns tolerates header counts that lie; the walker does not
			}
		}
		if werr != nil && !questionCut(b) {
			t.Fatalf("miekg/dns unpacks %v records, walker fails: %v", counts, werr)
		}
		if werr == nil {
			checkOffsets(t, b, offs, m)
			if stableNames(b, offs) {
				checkStable(t, b, offs, m)
				if c := clientCopy(b, m); c != nil {
					checkClientCopy(t, c, m)
				}
			}
		}
		// What the cache walks is what miekg/dns packs: repack and walk.
		for _, compress := range []bool{false, true} {
			m.Compress = compress
			p, err := m.Pack()
			if err != nil {
				return
			}
			offs, err := ttlOffsets(p, nil)
			if err != nil {
				t.Fatalf("walk packed message (compress %v): %v", compress, err)
			}
			checkOffsets(t, p, offs, m)
			if !stableNames(p, offs) && !scansRDATA(m) {
				t.Fatalf("a message miekg/dns packed (compress %v) reads bytes a hit rewrites", compress)
			}
		}
	})
}

// checkStable fails t unless msg, whose names stableNames passed, unpacks
// to the records of m with its header and every TTL rewritten as hits
// rewrite them.
func checkStable(t *testing.T, msg []byte, offs []uint16, m *dns.Msg) {
	t.Helper()
	b := append([]byte(nil), msg...)
	b[0], b[1], b[2], b[3] = ^b[0], ^b[1], b[2]^0x85, b[3]^0xB0 // ID; RD, AA, QR; RA, AD, CD
	for _, off := range offs {
		binary.BigEndian.PutUint32(b[off:], ^binary.BigEndian.Uint32(b[off:]))
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("stable message no longer unpacks once rewritten: %v", err)
	}
	if len(r.Question) != len(m.Question) || len(r.Question) > 0 && r.Question[0] != m.Question[0] {
		t.Fatalf("question %v once rewritten, %v before", r.Question, m.Question)
	}
	for i, sec := range [][2][]dns.RR{{m.Answer, r.Answer}, {m.Ns, r.Ns}, {m.Extra, r.Extra}} {
		for j := range sec[0] {
			was, is := dns.Copy(sec[0][j]), dns.Copy(sec[1][j])
			if was.Header().Rrtype != dns.TypeOPT {
				was.Header().Ttl, is.Header().Ttl = 0, 0
			}
			if was.String() != is.String() {
				t.Fatalf("section %d record %d reads %q once rewritten, %q before", i, j, is, was)
			}
		}
	}
}

// scansRDATA reports whether m has a record whose RDATA stableNames scans
// for pointers (see rdataNames): only there can it take a byte pair that
// is no pointer for one.
func scansRDATA(m *dns.Msg) bool {
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if _, _, scan := rdataNames(rr.Header().Rrtype); scan {
				return true
			}
		}
	}
	return false
}

// checkOffsets fails t unless offs are the TTL fields of the records of m,
// OPT excluded, in msg.
func checkOffsets(t *testing.T, msg []byte, offs []uint16, m *dns.Msg) {
	t.Helper()
	want := ttls(m)
	if len(offs) != len(want) {
		t.Fatalf("walker found %d TTLs, miekg/dns %d records but OPT", len(offs), len(want))
	}
	for i, off := range offs {
		if got := binary.BigEndian.Uint32(msg[off:]); got != want[i] {
			t.Fatalf("TTL %d at offset %d is %d, miekg/dns says %d", i, off, got, want[i])
		}
	}
}

// questionCut reports whether msg is a message without records whose last
// question stops short of its QTYPE or QCLASS: miekg/dns accepts that
// (leaving them zero), the walker does not, and it never needs to, since
// the cache only walks messages miekg/dns packed.
func questionCut(msg []byte) bool {
	if binary.BigEndian.Uint32(msg[6:])|uint32(binary.BigEndian.Uint16(msg[10:])) != 0 {
		return false
	}
	for pad := 1; pad <= 4; pad++ {
		if _, err := ttlOffsets(append(msg[:len(msg):len(msg)], make([]byte, pad)...), nil); err == nil {
			return true
		}
	}
	return false
}
