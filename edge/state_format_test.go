package edge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/listen"
	edgetls "github.com/dnsedge/dnsedge/tls"
	"github.com/dnsedge/dnsedge/transport"
)

// stateTestConfig forwards to one address nobody answers on: the tests
// never query it.
const stateTestConfig = `listeners:
  - {proto: udp, address: "127.0.0.1:0"}
upstreams:
  - {name: v4, url: "udp://127.0.0.1:5399"}
`

var stateTestPath = transport.PathID{Upstream: "v4", Proto: "udp", Addr: netip.MustParseAddrPort("127.0.0.1:5399")}

// newStateServer builds (and does not start) a server of stateTestConfig.
func newStateServer(t testing.TB) *Server {
	t.Helper()
	cfg, err := Parse("test.yaml", []byte(stateTestConfig))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testRecord returns a cache record of an A answer for name, 300s TTL,
// cached 10s ago.
func testRecord(t testing.TB, name string) cache.Record {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	m := new(dns.Msg)
	m.SetReply(q)
	m.Id = 0
	rr, err := dns.NewRR(name + " 300 IN A 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	m.Answer = []dns.RR{rr}
	msg, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var wire [255]byte
	n, err := dns.PackDomainName(name, wire[:], 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	key := append(bytes.ToLower(wire[:n]), 0, 1, 0, 1, 0) // type A, class IN, no flags
	return cache.Record{Key: key, Msg: msg, Age: 10 * time.Second, TTL: 300, Stale: 3600, FailedAgo: -1}
}

// goodState is a state for a server of stateTestConfig: the health of its
// path, one cache entry, two ticket keys and QUIC keys.
func goodState(t testing.TB) *serverState {
	return &serverState{
		written: time.Now(),
		health: map[transport.PathID]transport.HealthState{
			stateTestPath: {State: transport.Open, SRTT: 20 * time.Millisecond, RTTVar: 5 * time.Millisecond, Samples: 7,
				SampledAgo: time.Second, Consecutive: 5, OpenedAgo: 100 * time.Millisecond, ClosedAgo: -1,
				Cooldown: 2 * time.Second, Loss: 0.5, LossAgo: 0, SeenAgo: 0},
			{Upstream: "gone", Proto: "udp", Addr: netip.MustParseAddrPort("[::1]:53")}: {SampledAgo: -1, OpenedAgo: -1, ClosedAgo: -1, LossAgo: -1, SeenAgo: -1},
		},
		cacheOn: true,
		trust:   "off",
		records: []cache.Record{testRecord(t, "h1.test.example.")},
		tickets: []edgetls.TicketKey{{Key: [32]byte{1}, Age: time.Hour}, {Key: [32]byte{2}, Age: 25 * time.Hour}},
		quic:    &listen.QUICKeys{Reset: [32]byte{3}, Token: [32]byte{4}},
	}
}

func encode(t testing.TB, st *serverState) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := st.write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// coldCheck fails the test unless s holds nothing of goodState.
func coldCheck(t *testing.T, s *Server, tickets []edgetls.TicketKey, quic listen.QUICKeys) {
	t.Helper()
	if n := s.gen.Load().cache.Len(); n != 0 {
		t.Fatalf("%d cache entries applied", n)
	}
	if st := s.health.States()[stateTestPath]; st.Samples != 0 || st.State != transport.Closed {
		t.Fatalf("health applied: %+v", st)
	}
	if got := s.tickets.Keys(); got[0].Key != tickets[0].Key || len(got) != len(tickets) {
		t.Fatal("ticket keys applied")
	}
	if *s.quicKeys != quic {
		t.Fatal("QUIC keys applied")
	}
}

func TestReadStateApplies(t *testing.T) {
	s := newStateServer(t)
	st := goodState(t)
	if err := s.ReadState(bytes.NewReader(encode(t, st))); err != nil {
		t.Fatal(err)
	}
	if n := s.gen.Load().cache.Len(); n != 1 {
		t.Fatalf("%d cache entries, want 1", n)
	}
	h := s.health.States()[stateTestPath]
	if h.State != transport.Open || h.SRTT != 20*time.Millisecond || h.Samples != 7 || h.Consecutive != 5 {
		t.Fatalf("health %+v", h)
	}
	if _, ok := s.health.States()[transport.PathID{Upstream: "gone", Proto: "udp", Addr: netip.MustParseAddrPort("[::1]:53")}]; ok {
		t.Fatal("a path of the state that the configuration lacks was created")
	}
	if keys := s.tickets.Keys(); len(keys) != 2 || keys[0].Key != st.tickets[0].Key {
		t.Fatalf("ticket keys %v", keys)
	}
	if *s.quicKeys != *st.quic {
		t.Fatal("QUIC keys not taken")
	}
}

// reseal recomputes the checksum of the section at off (its kind byte).
func reseal(b []byte, off int) {
	n := int(binary.BigEndian.Uint32(b[off+1:]))
	sum := crc32.Checksum(b[off:off+5+n], crcTable)
	binary.BigEndian.PutUint32(b[off+5+n:], sum)
}

// TestReadStateRefuses: a stream cut anywhere, with any byte changed, of
// another version or with sections out of place is refused, and the
// server stays cold.
func TestReadStateRefuses(t *testing.T) {
	s := newStateServer(t)
	tickets, quic := s.tickets.Keys(), *s.quicKeys
	good := encode(t, goodState(t))
	hdr := len(stateMagic) + 2
	metaLen := 5 + int(binary.BigEndian.Uint32(good[hdr+1:])) + 4

	refuse := func(t *testing.T, b []byte, want error) {
		t.Helper()
		err := s.ReadState(bytes.NewReader(b))
		if err == nil {
			t.Fatal("accepted")
		}
		if want != nil && !errors.Is(err, want) {
			t.Fatalf("error %v, want %v", err, want)
		}
		coldCheck(t, s, tickets, quic)
	}
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(good) {
			refuse(t, good[:n], nil)
		}
	})
	t.Run("every byte changed", func(t *testing.T) {
		for i := range good {
			b := bytes.Clone(good)
			b[i] ^= 0x40
			refuse(t, b, nil)
		}
	})
	tests := []struct {
		name string
		edit func(b []byte) []byte
		want error
	}{
		{"other version", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[len(stateMagic):], stateVersion+1)
			return b
		}, ErrStateVersion},
		{"older version", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[len(stateMagic):], 0)
			return b
		}, ErrStateVersion},
		{"not a state", func(b []byte) []byte { return append([]byte("GET / HTTP/1.1\r\n\r\n"), b...) }, errStateMagic},
		{"empty", func(b []byte) []byte { return nil }, errStateTrunc},
		{"no end section", func(b []byte) []byte { return b[:len(b)-9] }, errStateTrunc},
		{"unknown section", func(b []byte) []byte {
			b = append(b[:hdr+metaLen:hdr+metaLen], append([]byte{99, 0, 0, 0, 0, 0, 0, 0, 0}, b[hdr+metaLen:]...)...)
			reseal(b, hdr+metaLen)
			return b
		}, nil},
		{"meta not first", func(b []byte) []byte {
			return append(b[:hdr:hdr], b[hdr+metaLen:]...)
		}, nil},
		{"section beyond the bound", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[hdr+1:], maxSection+1)
			return b
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refuse(t, tt.edit(bytes.Clone(good)), tt.want)
		})
	}
	// Values checked inside sections whose checksum is right.
	bad := []struct {
		name string
		edit func(st *serverState)
	}{
		{"health out of range", func(st *serverState) {
			h := st.health[stateTestPath]
			h.Loss = 2
			st.health[stateTestPath] = h
		}},
		{"corrupt cache entry", func(st *serverState) { st.records[0].Msg = st.records[0].Msg[:14] }},
		{"negative ticket key age", func(st *serverState) { st.tickets[0].Age = -time.Second }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			st := goodState(t)
			tt.edit(st)
			refuse(t, encode(t, st), nil)
		})
	}
	if err := s.ReadState(bytes.NewReader(good)); err != nil {
		t.Fatalf("the good stream after all that: %v", err)
	}
}

// TestReadStateStopsAtEnd: nothing after the end section is read.
func TestReadStateStopsAtEnd(t *testing.T) {
	s := newStateServer(t)
	r := bytes.NewReader(append(encode(t, goodState(t)), "after"...))
	if err := s.ReadState(r); err != nil {
		t.Fatal(err)
	}
	if r.Len() != len("after") {
		t.Fatalf("%d bytes left, want 5", r.Len())
	}
}

// FuzzReadState: the parser never panics, and what it accepts it writes
// back to a stream it reads the same.
func FuzzReadState(f *testing.F) {
	good := encode(f, goodState(f))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(encode(f, &serverState{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := readState(bytes.NewReader(b))
		if err != nil {
			return
		}
		again, err := readState(bytes.NewReader(encode(t, st)))
		if err != nil {
			t.Fatalf("written back, refused: %v", err)
		}
		if !reflect.DeepEqual(normal(st), normal(again)) {
			t.Fatalf("written back, read differently:\n%+v\n%+v", st, again)
		}
	})
}

// normal makes empty and nil collections alike for comparison.
func normal(st *serverState) *serverState {
	c := *st
	if len(c.health) == 0 {
		c.health = nil
	}
	if len(c.records) == 0 {
		c.records = nil
	}
	if len(c.tickets) == 0 {
		c.tickets = nil
	}
	return &c
}

// FuzzStateSection fuzzes one section's payload behind a valid header,
// meta section and checksum, which FuzzReadState's inputs rarely get
// past.
func FuzzStateSection(f *testing.F) {
	good := goodState(f)
	for kind, payload := range map[byte][]byte{
		secHealth: sectionPayload(f, good, secHealth),
		secCache:  sectionPayload(f, good, secCache),
		secTicket: sectionPayload(f, good, secTicket),
		secQUIC:   sectionPayload(f, good, secQUIC),
	} {
		f.Add(kind, payload)
	}
	f.Fuzz(func(t *testing.T, kind byte, payload []byte) {
		if len(payload) > maxSection {
			return
		}
		var b bytes.Buffer
		b.WriteString(stateMagic)
		b.Write([]byte{0, stateVersion})
		sw := &sectionWriter{w: &b}
		sw.section(secMeta, append(binary.AppendVarint(nil, 1), 1, 0))
		sw.section(kind, payload)
		sw.section(secEnd, nil)
		st, err := readState(&b)
		if err != nil {
			return
		}
		again, err := readState(bytes.NewReader(encode(t, st)))
		if err != nil {
			t.Fatalf("written back, refused: %v", err)
		}
		if !reflect.DeepEqual(normal(st), normal(again)) {
			t.Fatalf("written back, read differently:\n%+v\n%+v", st, again)
		}
	})
}

// sectionPayload returns the payload of the first section of kind in
// st's stream.
func sectionPayload(t testing.TB, st *serverState, kind byte) []byte {
	b := encode(t, st)[len(stateMagic)+2:]
	for len(b) >= 9 {
		n := int(binary.BigEndian.Uint32(b[1:]))
		if b[0] == kind {
			return b[5 : 5+n]
		}
		b = b[9+n:]
	}
	t.Fatalf("no section %d", kind)
	return nil
}
