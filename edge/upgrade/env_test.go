package upgrade

import (
	"testing"

	"github.com/dnsedge/dnsedge/edge/listen"
)

func TestFDsRoundTrip(t *testing.T) {
	socks := []listen.Socket{
		{Network: "udp4", Addr: "127.0.0.1:53", Index: 0},
		{Network: "udp4", Addr: "127.0.0.1:53", Index: 1},
		{Network: "tcp6", Addr: "[::1]:853", Index: 0},
		{Network: "tcp", Addr: "127.0.0.1:9153", Index: 0},
		{Network: "udp4", Addr: "127.0.0.1:853", Index: 0},
		{Network: "unix", Addr: "quic:127.0.0.1:853", Index: 0}, // its forwarding pair
	}
	got, err := decodeFDs(encodeFDs(socks))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(socks) {
		t.Fatalf("got %d sockets, want %d", len(got), len(socks))
	}
	if !listen.IsQUICPair(got[len(got)-1].sock) || listen.IsQUICPair(got[len(got)-2].sock) {
		t.Errorf("the QUIC forwarding pair is not told apart")
	}
	for i, e := range got {
		if e.sock.Key() != socks[i].Key() || e.fd != firstFD+i {
			t.Errorf("socket %d: got %q fd %d, want %q fd %d", i, e.sock.Key(), e.fd, socks[i].Key(), firstFD+i)
		}
	}
}

func TestDecodeFDsRefusesJunk(t *testing.T) {
	for _, v := range []string{"x", "2=udp4 127.0.0.1:53 0", "3=udp4 127.0.0.1:53", "3=sctp 127.0.0.1:53 0", "3=udp4 a -1"} {
		if _, err := decodeFDs(v); err == nil {
			t.Errorf("%q: no error", v)
		}
	}
}

func FuzzDecodeFDs(f *testing.F) {
	f.Add("3=udp4 127.0.0.1:53 0;4=tcp4 127.0.0.1:53 0")
	f.Fuzz(func(t *testing.T, v string) {
		entries, err := decodeFDs(v)
		if err != nil {
			return
		}
		for _, e := range entries {
			if _, _, _, err := listen.ParseSocketKey(e.sock.Key()); err != nil {
				t.Fatalf("decoded key %q does not parse: %v", e.sock.Key(), err)
			}
		}
	})
}
