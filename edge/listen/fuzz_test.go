package listen

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, q := range []*dns.Msg{
		query("example.org.", dns.TypeA),
		queryEDNS("example.org.", dns.TypeAAAA, 1232, true),
		queryEDNS("a.very.long.name.example.", dns.TypeTXT, 4096, false),
	} {
		b, _ := q.Pack()
		seeds = append(seeds, b)
	}
	return append(seeds, nil, []byte{1, 2, 3, 4, 5}, make([]byte, 12),
		[]byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0},
		[]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
}

// FuzzUDPPacket feeds datagrams through the decision the UDP listener
// makes and the replies it would send (see udpPacketInvariants).
func FuzzUDPPacket(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	for _, tt := range corpus(f) {
		f.Add(tt.data)
	}
	buf := make([]byte, maxFrame) // inputs run one at a time in a process
	f.Fuzz(func(t *testing.T, b []byte) { udpPacketInvariants(t, b, buf) })
}

// TestUDPPacketCorpus runs the malformed datagrams of testdata, each with
// the decision it must get.
func TestUDPPacketCorpus(t *testing.T) {
	t.Parallel()
	want := map[string]action{
		"five_bytes.bin":         actDrop,
		"response.bin":           actDrop,
		"header_only.bin":        actFormErr,
		"qdcount_lie.bin":        actFormErr,
		"compression_loop.bin":   actFormErr,
		"label_past_end.bin":     actFormErr,
		"truncated_opt.bin":      actFormErr,
		"opt_bad_option_len.bin": actFormErr,
		"name_too_long.bin":      actFormErr,
		"opt_version_1.bin":      actBadVers,
		"update.bin":             actNotImp,
	}
	buf := make([]byte, maxFrame)
	for _, tt := range corpus(t) {
		t.Run(tt.name, func(t *testing.T) {
			w, ok := want[tt.name]
			if !ok {
				t.Fatal("corpus file without an expected decision")
			}
			if got := udpPacketInvariants(t, tt.data, buf); got != w {
				t.Errorf("decision %v, want %v", got, w)
			}
		})
	}
}

type corpusFile struct {
	name string
	data []byte
}

func corpus(t testing.TB) []corpusFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "TestUDPPacketCorpus", "*.bin"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	var files []corpusFile
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, corpusFile{filepath.Base(p), b})
	}
	return files
}

// udpPacketInvariants checks what the UDP listener does with datagram b:
// nothing panics, the decision is a known one, a rejection is a valid
// reply no larger than b, and a served query's answer fits the client's
// size. It returns the decision. buf is scratch space of maxFrame bytes.
func udpPacketInvariants(t *testing.T, b, buf []byte) action {
	m, act, _ := check(b)
	if hdr, _ := checkHeader(b); hdr == actServe {
		sameAsUnpack(t, b)
	}
	switch act {
	case actDrop:
		return act
	case actFormErr, actNotImp, actBadVers:
		r := reject(b, m, act, buf)
		if len(r) > len(b) {
			t.Fatalf("%v reply of %d bytes to %d", act, len(r), len(b))
		}
		back := new(dns.Msg)
		if err := back.Unpack(r); err != nil {
			t.Fatalf("%v reply does not parse: %v", act, err)
		}
		if !back.Response || back.Id != uint16(b[0])<<8|uint16(b[1]) || back.Rcode != rejectRcode(act) {
			t.Fatalf("%v reply %v", act, back)
		}
		return act
	case actServe:
	default:
		t.Fatalf("unknown action %v", act)
	}
	if m == nil || len(m.Question) != 1 || m.Opcode != dns.OpcodeQuery || m.Response {
		t.Fatalf("served %v", m)
	}
	// Echo the query back as the handler's answer: it goes through Finish
	// and must fit the client's size.
	req := &pipeline.Request{Msg: m, MaxSize: udpSize(m)}
	r, send := Finish(req, m.Copy(), nil, nil)
	if !send {
		t.Fatal("answer not sent")
	}
	if out, err := pack(r, buf, req.MaxSize); err == nil && len(out) > req.MaxSize {
		t.Fatalf("reply of %d bytes for a client of %d", len(out), req.MaxSize)
	}
	return act
}

// sameAsUnpack checks that unpackCommon, when it takes b (whose header
// passed checkHeader), makes of it exactly what dns.Msg.Unpack does.
func sameAsUnpack(t *testing.T, b []byte) {
	t.Helper()
	got := unpackCommon(b)
	if got == nil {
		return
	}
	want := new(dns.Msg)
	if err := want.Unpack(b); err != nil {
		t.Fatalf("unpackCommon took a message Unpack rejects (%v):\n%v", err, got)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("unpackCommon made\n%#v\nUnpack made\n%#v", got, want)
	}
}

// TestUnpackCommon checks which shapes of query unpackCommon takes; what
// it makes of them is checked against Unpack by sameAsUnpack (and by
// FuzzUDPPacket).
func TestUnpackCommon(t *testing.T) {
	t.Parallel()
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withOpt := func(f func(o *dns.OPT)) []byte {
		q := queryEDNS("example.org.", dns.TypeA, 1232, true)
		f(q.IsEdns0())
		return pack(q)
	}
	flags := query("Example.ORG.", dns.TypeMX)
	flags.Id, flags.RecursionDesired, flags.CheckingDisabled, flags.AuthenticatedData, flags.Zero = 0xBEEF, true, true, true, true
	tsig := queryEDNS("example.org.", dns.TypeA, 1232, false)
	tsig.Extra = append(tsig.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: "key.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: dns.HmacSHA256, MAC: "00", OrigId: 1})
	plain := pack(query("example.org.", dns.TypeA))
	tests := []struct {
		name  string
		b     []byte
		taken bool
	}{
		{"no EDNS", plain, true},
		{"header flags", pack(flags), true},
		{"escaped name", pack(query(`a\.b\032c.example.org.`, dns.TypeTXT)), true},
		{"compressed name", []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, false},
		{"trailing bytes", append(append([]byte{}, plain...), 1, 2, 3), true},
		{"question cut short", plain[:len(plain)-1], false},
		{"EDNS", withOpt(func(*dns.OPT) {}), true},
		{"EDNS, extended rcode bits and version", withOpt(func(o *dns.OPT) { o.SetExtendedRcode(dns.RcodeBadCookie); o.SetVersion(1) }), true},
		{"EDNS with an option", withOpt(func(o *dns.OPT) {
			o.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
		}), false},
		{"EDNS owned by a name", withOpt(func(o *dns.OPT) { o.Hdr.Name = "example.org." }), false},
		{"OPT and TSIG", pack(tsig), false},
		{"other record", pack(&dns.Msg{MsgHdr: dns.MsgHdr{Id: 1}, Question: []dns.Question{{Name: ".", Qtype: dns.TypeNS, Qclass: dns.ClassINET}},
			Extra: []dns.RR{mustRR("example.org. 1 IN A 192.0.2.1")}}), false},
		{"OPT cut short", withOpt(func(*dns.OPT) {})[:len(plain)+10], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unpackCommon(tt.b) != nil; got != tt.taken {
				t.Errorf("taken = %v, want %v", got, tt.taken)
			}
			sameAsUnpack(t, tt.b)
		})
	}
}

// FuzzTCPStream feeds a byte stream through the TCP framing reader.
func FuzzTCPStream(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(frameOf(s))
		f.Add(append(frameOf(s), frameOf(s)...))
	}
	f.Add([]byte{0})
	f.Add([]byte{0, 0, 0, 5, 1})
	buf := make([]byte, maxFrame) // inputs run one at a time in a process
	f.Fuzz(func(t *testing.T, stream []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(stream), 16)
		consumed := 0
		for {
			n, started, err := readFrame(br, buf, nil)
			if err != nil {
				switch {
				case errors.Is(err, io.EOF) && !started && consumed == len(stream):
				case errors.Is(err, io.ErrUnexpectedEOF) && started && consumed < len(stream):
				default:
					t.Fatalf("after %d of %d bytes: started=%v err=%v", consumed, len(stream), started, err)
				}
				return
			}
			if want := int(stream[consumed])<<8 | int(stream[consumed+1]); n != want {
				t.Fatalf("frame of %d bytes, prefix says %d", n, want)
			}
			if !bytes.Equal(buf[:n], stream[consumed+2:consumed+2+n]) {
				t.Fatal("frame content differs from the stream")
			}
			consumed += 2 + n
			check(buf[:n])
		}
	})
}
