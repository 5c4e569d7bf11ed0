package listen

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
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
// makes and the replies it would send, checking that nothing panics, that
// the decision is one of the known ones, and that no rejection is larger
// than what provoked it.
func FuzzUDPPacket(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	log := slog.New(slog.DiscardHandler)
	buf := make([]byte, maxFrame) // inputs run one at a time in a process
	f.Fuzz(func(t *testing.T, b []byte) {
		m, act, _ := check(b)
		switch act {
		case actDrop:
			return
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
			return
		case actServe:
		default:
			t.Fatalf("unknown action %v", act)
		}
		if m == nil || len(m.Question) != 1 || m.Opcode != dns.OpcodeQuery || m.Response {
			t.Fatalf("served %v", m)
		}
		// Echo the query back as the handler's answer: it goes through
		// Finish and must fit the client's size.
		req := &pipeline.Request{Msg: m, MaxSize: udpSize(m)}
		r, send := Finish(req, m.Copy(), nil, log)
		if !send {
			t.Fatal("answer not sent")
		}
		if out, err := pack(r, buf, req.MaxSize); err == nil && len(out) > req.MaxSize {
			t.Fatalf("reply of %d bytes for a client of %d", len(out), req.MaxSize)
		}
	})
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
