package cache

import (
	"encoding/binary"
	"testing"

	"github.com/miekg/dns"
)

// TestClientCopy: the upstream's bytes go to the client without their OPT
// record when it is the last, and not at all when the reply has a TSIG,
// an OPT before another record, an EDE, an extended RCODE or bytes after
// its last record.
func TestClientCopy(t *testing.T) {
	t.Parallel()
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	reply := func(edit func(m *dns.Msg)) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("a.example.org.", dns.TypeA)
		m.Response, m.Compress = true, true
		m.Answer = []dns.RR{rr("a.example.org. 300 IN A 192.0.2.1")}
		edit(m)
		return m
	}
	withOPT := func(m *dns.Msg) { m.SetEdns0(1232, true) }
	tests := []struct {
		name     string
		m        *dns.Msg
		trailing bool
		ok       bool
	}{
		{"no OPT", reply(func(*dns.Msg) {}), false, true},
		{"OPT last", reply(withOPT), false, true},
		{"OPT with a cookie", reply(func(m *dns.Msg) {
			withOPT(m)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"}}
		}), false, true},
		{"OPT before glue", reply(func(m *dns.Msg) {
			withOPT(m)
			m.Extra = append(m.Extra, rr("ns.example.org. 300 IN A 192.0.2.53"))
		}), false, false},
		{"EDE", reply(func(m *dns.Msg) {
			withOPT(m)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeOther}}
		}), false, false},
		{"extended RCODE", reply(func(m *dns.Msg) {
			withOPT(m)
			m.Rcode = dns.RcodeBadCookie
		}), false, false},
		{"TSIG", reply(func(m *dns.Msg) {
			m.Extra = append(m.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: "key.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
				Algorithm: dns.HmacSHA256, MACSize: 0, OrigId: 1})
		}), false, false},
		{"bytes after the last record", reply(withOPT), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if tt.trailing {
				b = append(b, 0xC0, 12)
			}
			c := clientCopy(b, tt.m)
			if (c != nil) != tt.ok {
				t.Fatalf("copy made: %v, want %v", c != nil, tt.ok)
			}
			if c != nil {
				checkClientCopy(t, c, tt.m)
			}
		})
	}
}

// checkClientCopy checks c, clientCopy's bytes for m, as a listener sends
// them: with an ID, header bits and an OPT of its own, it unpacks to m's
// question and records but for m's OPT.
func checkClientCopy(t *testing.T, c []byte, m *dns.Msg) {
	t.Helper()
	b := append([]byte(nil), c...)
	b[0], b[1], b[2], b[3] = ^b[0], ^b[1], b[2]^0x85, b[3]^0xB0
	binary.BigEndian.PutUint16(b[10:], binary.BigEndian.Uint16(b[10:])+1)
	b = append(b, 0, 0, 41, 4, 0xD0, 0, 0, 0x80, 0, 0, 0) // OPT: 1232, DO
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("the client's copy does not unpack: %v", err)
	}
	if len(r.Question) != len(m.Question) || len(r.Question) > 0 && r.Question[0] != m.Question[0] {
		t.Fatalf("question %v in the copy, %v in the reply", r.Question, m.Question)
	}
	var extra []dns.RR
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	if r.IsEdns0() == nil || r.IsEdns0().UDPSize() != 1232 {
		t.Fatalf("the listener's OPT is not the copy's: %v", r.Extra)
	}
	got := r.Extra[:len(r.Extra)-1]
	for i, sec := range [][2][]dns.RR{{m.Answer, r.Answer}, {m.Ns, r.Ns}, {extra, got}} {
		if len(sec[0]) != len(sec[1]) {
			t.Fatalf("section %d has %d records in the copy, %d in the reply", i, len(sec[1]), len(sec[0]))
		}
		for j := range sec[0] {
			if sec[0][j].String() != sec[1][j].String() {
				t.Fatalf("section %d record %d reads %q in the copy, %q in the reply", i, j, sec[1][j], sec[0][j])
			}
		}
	}
}
