package listen

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

// longPacket returns a long header packet of version v, type bits typ,
// destination connection ID dcid and some payload.
func longPacket(v uint32, typ byte, dcid []byte) []byte {
	p := []byte{0xc0 | typ<<4}
	p = binary.BigEndian.AppendUint32(p, v)
	p = append(p, byte(len(dcid)))
	p = append(p, dcid...)
	p = append(p, 8, 1, 2, 3, 4, 5, 6, 7, 8) // source connection ID
	return append(p, bytes.Repeat([]byte{0xaa}, 40)...)
}

// shortPacket returns a short header packet to dcid.
func shortPacket(dcid []byte) []byte {
	p := append([]byte{0x40}, dcid...)
	return append(p, bytes.Repeat([]byte{0xbb}, 30)...)
}

func mustCID(t *testing.T, g *cidGen) []byte {
	t.Helper()
	id, err := g.GenerateConnectionID()
	if err != nil {
		t.Fatal(err)
	}
	return id.Bytes()
}

// TestForwardsTo: what the old process hands the new one during an
// upgrade, packet by packet.
func TestForwardsTo(t *testing.T) {
	own, next := newCIDGen(7), newCIDGen(8)
	mine, theirs := mustCID(t, own), mustCID(t, next)
	// A client's random first DCID that happens to start with the old
	// process's marker is still a new connection: the tag tells.
	fake := append([]byte(nil), mine...)
	fake[cidLen-1] ^= 1
	clientCID := []byte{7, 1, 2, 3, 4, 5, 6, 7}
	for _, c := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"v1 initial, client's dcid", longPacket(quicV1, 0, clientCID), true},
		{"v1 0-rtt, client's dcid", longPacket(quicV1, 1, bytes.Repeat([]byte{9}, 20)), true},
		{"v1 initial to this process (its handshake)", longPacket(quicV1, 0, mine), false},
		{"v1 initial to the new process", longPacket(quicV1, 0, theirs), true},
		{"v1 initial, forged tag", longPacket(quicV1, 0, fake), true},
		{"v1 handshake to this process", longPacket(quicV1, 2, mine), false},
		{"v1 handshake to the new process", longPacket(quicV1, 2, theirs), true},
		{"v1 retry-type to the new process", longPacket(quicV1, 3, theirs), true},
		{"v2 initial, client's dcid", longPacket(quicV2, 1, clientCID), true},
		{"v2 0-rtt", longPacket(quicV2, 2, clientCID), true},
		{"v2 handshake to this process", longPacket(quicV2, 3, mine), false},
		{"v2 handshake to the new process", longPacket(quicV2, 3, theirs), true},
		{"v2 retry type, client's dcid", longPacket(quicV2, 0, clientCID), false},
		{"short to this process", shortPacket(mine), false},
		{"short to the new process", shortPacket(theirs), true},
		{"short, another marker", shortPacket(append([]byte{42}, theirs[1:]...)), false},
		{"version negotiation", longPacket(0, 0, clientCID), false},
		{"unknown version", longPacket(0x0a0a0a0a, 0, clientCID), false},
		{"empty", nil, false},
		{"short, cut", shortPacket(theirs)[:cidLen], false},
		{"long, cut in the version", longPacket(quicV1, 0, clientCID)[:4], false},
		{"long, dcid length beyond the packet", longPacket(quicV1, 0, clientCID)[:10], false},
		{"long, dcid over 20 bytes", longPacket(quicV1, 0, bytes.Repeat([]byte{1}, 21)), false},
		{"long, empty dcid", longPacket(quicV1, 0, nil), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := forwardsTo(c.p, own, next.marker); got != c.want {
				t.Fatalf("forwardsTo = %v, want %v", got, c.want)
			}
		})
	}
}

// TestCIDGen: IDs carry the marker, are told apart from one another and
// from another process's with the same marker.
func TestCIDGen(t *testing.T) {
	g, other := newCIDGen(3), newCIDGen(3)
	seen := make(map[string]bool)
	for range 100 {
		id := mustCID(t, g)
		if len(id) != cidLen || id[0] != 3 || !g.issued(id) {
			t.Fatalf("id %x: length %d, marker %d, issued %v", id, len(id), id[0], g.issued(id))
		}
		if other.issued(id) {
			t.Fatalf("id %x passes another key's tag", id)
		}
		if seen[string(id)] {
			t.Fatalf("id %x issued twice", id)
		}
		seen[string(id)] = true
	}
	if g.issued(nil) || g.issued(make([]byte, cidLen)) {
		t.Fatal("empty or zero id taken as issued")
	}
}

// TestForwardedEncoding: the address and packet survive the pair, both
// families; damaged datagrams are refused.
func TestForwardedEncoding(t *testing.T) {
	for _, a := range []string{"192.0.2.1:443", "[2001:db8::1]:8853"} {
		ua := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(a))
		d, err := encodeForwarded(ua, []byte("packet"))
		if err != nil {
			t.Fatal(err)
		}
		got, p, err := decodeForwarded(d)
		if err != nil || got.AddrPort() != ua.AddrPort() || string(p) != "packet" {
			t.Fatalf("%s: got %v %q %v", a, got, p, err)
		}
	}
	for _, d := range [][]byte{nil, {}, {6, 1, 2}, {3, 1, 2, 3, 'x'}} {
		if _, _, err := decodeForwarded(d); err == nil {
			t.Errorf("decodeForwarded(%x) accepted", d)
		}
	}
	if _, err := encodeForwarded(&net.UnixAddr{Name: "x"}, nil); err == nil {
		t.Error("non-IP address encoded")
	}
}

// FuzzQUICHeader: the invariant header parser must not panic, returns a
// connection ID inside the packet of at most 20 bytes, and forwardsTo
// agrees with it; a forwarded datagram decodes to what was encoded.
func FuzzQUICHeader(f *testing.F) {
	own := newCIDGen(1)
	mine := mustCIDF(f, own)
	for _, p := range [][]byte{
		longPacket(quicV1, 0, []byte{1, 2, 3, 4, 5, 6, 7, 8}), longPacket(quicV2, 1, mine),
		longPacket(quicV1, 2, mine), shortPacket(mine), {0xc0}, {0x40}, {}, {0xff, 0, 0, 0, 1, 21},
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		h, ok := parseQUICHeader(p)
		if ok {
			if len(h.dcid) > 20 {
				t.Fatalf("dcid of %d bytes", len(h.dcid))
			}
			if len(h.dcid) > 0 && !bytes.Contains(p, h.dcid) {
				t.Fatal("dcid not from the packet")
			}
			if h.opens && !h.long {
				t.Fatal("a short header opening a connection")
			}
		}
		if forwardsTo(p, own, 2) && !ok {
			t.Fatal("forwarding what does not parse")
		}
		d, err := encodeForwarded(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, got, err := decodeForwarded(d); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("round trip: %x, %v", got, err)
		}
		decodeForwarded(p) // must not panic
	})
}

func mustCIDF(f *testing.F, g *cidGen) []byte {
	id, err := g.GenerateConnectionID()
	if err != nil {
		f.Fatal(err)
	}
	return id.Bytes()
}
