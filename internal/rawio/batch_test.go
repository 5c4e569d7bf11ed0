package rawio

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// listen binds a UDP socket of network on addr, skipping when the family
// is missing.
func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("no %s socket on %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestReadWriteBatch(t *testing.T) {
	tests := []struct {
		name    string
		network string // the server socket's
		addr    string
		clients []string // network:address of each client socket
	}{
		{"v4", "udp4", "127.0.0.1:0", []string{"udp4:127.0.0.1:0", "udp4:127.0.0.1:0", "udp4:127.0.0.1:0"}},
		{"v6", "udp6", "[::1]:0", []string{"udp6:[::1]:0", "udp6:[::1]:0"}},
		{"v4 clients of a dual-stack socket", "udp", "[::]:0", []string{"udp4:127.0.0.1:0", "udp6:[::1]:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := listen(t, tt.network, tt.addr)
			b, err := NewBatcher(srv, tt.network != "udp4")
			if err != nil {
				t.Fatal(err)
			}
			port := srv.LocalAddr().(*net.UDPAddr).Port
			var clients []*net.UDPConn
			for _, c := range tt.clients {
				var network, addr string
				fmt.Sscanf(c, "%4s:", &network)
				addr = c[len(network)+1:]
				cc := listen(t, network, addr)
				clients = append(clients, cc)
				to := netip.AddrPortFrom(netip.MustParseAddrPort(addr).Addr(), uint16(port))
				for k := range 2 {
					if _, err := cc.WriteToUDPAddrPort(fmt.Appendf(nil, "q%d from %d", k, len(clients)-1), to); err != nil {
						t.Fatal(err)
					}
				}
			}
			want := 2 * len(clients)
			ms := make([]ipv4.Message, want+3)
			for i := range ms {
				ms[i].Buffers = [][]byte{make([]byte, 512)}
			}
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			var froms []netip.AddrPort
			var datas [][]byte
			for got < want {
				n, err := b.ReadBatch(ms, 0)
				if err != nil {
					t.Fatalf("read after %d: %v", got, err)
				}
				for i := range n {
					a, ok := ms[i].Addr.(*net.UDPAddr)
					if !ok {
						t.Fatalf("message %d: address %v", i, ms[i].Addr)
					}
					froms = append(froms, a.AddrPort())
					datas = append(datas, bytes.Clone(ms[i].Buffers[0][:ms[i].N]))
				}
				got += n
			}
			if got != want {
				t.Fatalf("read %d datagrams, want %d", got, want)
			}
			// Answer every datagram in one batch, to where it came from.
			out := make([]ipv4.Message, len(froms))
			for i, from := range froms {
				out[i] = ipv4.Message{Buffers: [][]byte{append([]byte("re "), datas[i]...)}, Addr: net.UDPAddrFromAddrPort(from)}
			}
			for len(out) > 0 {
				n, err := b.WriteBatch(out, 0)
				if err != nil {
					t.Fatal(err)
				}
				out = out[n:]
			}
			for ci, cc := range clients {
				cc.SetReadDeadline(time.Now().Add(5 * time.Second))
				seen := map[string]bool{}
				for range 2 {
					buf := make([]byte, 512)
					n, from, err := cc.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("client %d: %v", ci, err)
					}
					if int(from.Port()) != port {
						t.Errorf("client %d: reply from port %d, want %d", ci, from.Port(), port)
					}
					seen[string(buf[:n])] = true
				}
				for k := range 2 {
					if w := fmt.Sprintf("re q%d from %d", k, ci); !seen[w] {
						t.Errorf("client %d: no %q in %v", ci, w, seen)
					}
				}
			}
		})
	}
}

// TestReadDeadline checks that a read, or a read loop, waiting for a
// datagram ends with the socket's deadline, as closing a listener relies
// on.
func TestReadDeadline(t *testing.T) {
	tests := []struct {
		name string
		read func(Batcher, []ipv4.Message) error
	}{
		{"ReadBatch", func(b Batcher, ms []ipv4.Message) error {
			_, err := b.ReadBatch(ms, 0)
			return err
		}},
		{"ReadLoop", func(b Batcher, ms []ipv4.Message) error {
			return ReadLoop(b, ms, 0, 1, func(int) int { return 1 })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := listen(t, "udp4", "127.0.0.1:0")
			b, err := NewBatcher(srv, false)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				done <- tt.read(b, []ipv4.Message{{Buffers: [][]byte{make([]byte, 512)}}})
			}()
			srv.SetReadDeadline(time.Unix(1, 0))
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("read ended with %v, want a deadline error", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("read did not end at the deadline")
			}
		})
	}
}

// TestWriteBadAddress checks that a message without an address of the
// socket's family fails alone: the ones before it are written.
func TestWriteBadAddress(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	cl := listen(t, "udp4", "127.0.0.1:0")
	b, err := NewBatcher(srv, false)
	if err != nil {
		t.Fatal(err)
	}
	to := cl.LocalAddr().(*net.UDPAddr)
	tests := []struct {
		name  string
		addrs []net.Addr
		n     int
		err   bool
	}{
		{"first bad", []net.Addr{&net.UDPAddr{IP: net.ParseIP("::1"), Port: 53}, to}, 0, true},
		{"not udp", []net.Addr{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}}, 0, true},
		{"second bad", []net.Addr{to, nil, to}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := make([]ipv4.Message, len(tt.addrs))
			for i, a := range tt.addrs {
				ms[i] = ipv4.Message{Buffers: [][]byte{[]byte("x")}, Addr: a}
			}
			n, err := b.WriteBatch(ms, 0)
			if n != tt.n || (err != nil) != tt.err {
				t.Errorf("WriteBatch = %d, %v; want %d, error %v", n, err, tt.n, tt.err)
			}
		})
	}
}

// TestReadLoop: every datagram reaches handle once, in order, with its
// sender, whether it comes alone, while handle is still busy with the
// one before (the loop then waits on the poller without the read that
// would have found the queue empty, and that datagram's readiness must
// not be lost), or in a burst; handle returning 0 ends the loop with nil.
func TestReadLoop(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	b, err := NewBatcher(srv, false)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	send := func(i int) {
		if _, err := cl.Write([]byte(fmt.Sprintf("d%d", i))); err != nil {
			t.Error(err)
		}
	}
	// 0-9 alone, each once the one before was handled; 10-19 each sent
	// by handle while it handles the one before; 20-39 in one burst.
	const alone, during, total = 10, 20, 40
	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 64)}
	}
	var got []string
	progress := make(chan int, total)
	done := make(chan error, 1)
	go func() {
		done <- ReadLoop(b, ms, 0, 2, func(n int) int {
			for i := range n {
				got = append(got, string(ms[i].Buffers[0][:ms[i].N]))
				if a, ok := ms[i].Addr.(*net.UDPAddr); !ok || a.String() != cl.LocalAddr().String() {
					t.Errorf("datagram from %v, want %v", ms[i].Addr, cl.LocalAddr())
				}
			}
			k := len(got)
			if k > alone && k < during {
				send(k)
			}
			progress <- k
			if k == total {
				return 0
			}
			return len(ms)
		})
	}()
	wait := func(want int) {
		t.Helper()
		for {
			select {
			case k := <-progress:
				if k >= want {
					return
				}
			case err := <-done:
				done <- err
				if len(progress) == 0 {
					t.Fatalf("loop ended with %v after %d datagrams", err, len(got))
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("stalled waiting for datagram %d", want-1)
			}
		}
	}
	for i := range alone {
		send(i)
		wait(i + 1)
	}
	send(alone)
	wait(during)
	for i := during; i < total; i++ {
		send(i)
	}
	wait(total)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("loop ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("loop did not end when handle returned 0")
	}
	for i, s := range got {
		if want := fmt.Sprintf("d%d", i); s != want {
			t.Fatalf("datagram %d is %q, want %q (all: %v)", i, s, want, got)
		}
	}
}
