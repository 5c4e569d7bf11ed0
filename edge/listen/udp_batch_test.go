package listen

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestUDPBatch has many clients send queries, junk and a header without a
// query's shape before Serve starts, so the socket buffers hold more
// datagrams than one recvmmsg reads: every query must be answered to the
// client that sent it, from the listener's address, with its own ID and
// question; the FORMERR header gets FORMERR and the junk nothing. It runs
// on both families, with batched reads and writes and with one datagram
// per syscall (the path outside Linux), with and without pktinfo.
func TestUDPBatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts udpOptions
	}{
		{"batch", udpOptions{}},
		{"batch pktinfo", udpOptions{pktinfo: true}},
		{"one per syscall", udpOptions{batch: 1}},
		{"one per syscall pktinfo", udpOptions{batch: 1, pktinfo: true}},
	}
	for _, f := range []family{fam4, fam6} {
		for _, tt := range tests {
			t.Run(f.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				needFamily(t, f)
				h := &fakeHandler{t: t, serve: func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
					m := new(dns.Msg)
					m.SetReply(req.Msg)
					m.Answer = []dns.RR{mustRR(req.Msg.Question[0].Name + " 60 IN A 192.0.2.1")}
					return m, nil
				}}
				l, err := listenUDP(testConfig(t, f, h), tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				const clients, perClient = 8, 12 // more than a recvmmsg reads per socket
				conns := make([]*net.UDPConn, clients)
				for i := range conns {
					c, err := net.ListenUDP(network("udp", f.addr.Addr()), net.UDPAddrFromAddrPort(f.addr))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
					conns[i] = c
				}
				send := func(c *net.UDPConn, wire []byte) {
					t.Helper()
					if _, err := c.WriteToUDPAddrPort(wire, l.Addr()); err != nil {
						t.Fatal(err)
					}
				}
				// Client 0 starts with junk and a header no query has.
				junk := query("junk.example.", dns.TypeA)
				junk.Response = true
				junkWire, _ := junk.Pack()
				send(conns[0], junkWire)
				bad := []byte{0xbe, 0xef, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0}
				send(conns[0], bad)
				for n := range perClient {
					for i, c := range conns {
						q := query(fmt.Sprintf("c%d-q%d.example.", i, n), dns.TypeA)
						q.Id = uint16(i<<8 | n)
						wire, err := q.Pack()
						if err != nil {
							t.Fatal(err)
						}
						send(c, wire)
					}
				}
				serve(t, l)
				for i, c := range conns {
					want := perClient
					if i == 0 {
						want++ // the FORMERR
					}
					seen := make(map[uint16]bool)
					buf := make([]byte, dns.MaxMsgSize)
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					for range want {
						n, from, err := c.ReadFromUDPAddrPort(buf)
						if err != nil {
							t.Fatalf("client %d after %d replies: %v", i, len(seen), err)
						}
						if unmap(from) != l.Addr() {
							t.Errorf("client %d: reply from %v, want %v", i, from, l.Addr())
						}
						checkBatchReply(t, i, buf[:n], seen)
					}
					// Nothing else comes, the junk least of all.
					c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
						t.Errorf("client %d: unexpected reply %x", i, buf[:n])
					}
				}
			})
		}
	}
}

// checkBatchReply checks that wire answers a query client i sent and that
// no reply came twice.
func checkBatchReply(t *testing.T, i int, wire []byte, seen map[uint16]bool) {
	t.Helper()
	r := new(dns.Msg)
	if err := r.Unpack(wire); err != nil {
		t.Fatalf("client %d: unpack %x: %v", i, wire, err)
	}
	if seen[r.Id] {
		t.Errorf("client %d: reply %d twice", i, r.Id)
	}
	seen[r.Id] = true
	if r.Id == 0xbeef {
		if i != 0 || r.Rcode != dns.RcodeFormatError {
			t.Errorf("client %d: reply to the bad header: %v", i, r)
		}
		return
	}
	name := fmt.Sprintf("c%d-q%d.example.", r.Id>>8, r.Id&0xff)
	if int(r.Id>>8) != i || len(r.Question) != 1 || r.Question[0].Name != name ||
		len(r.Answer) != 1 || r.Answer[0].Header().Name != name || r.Rcode != dns.RcodeSuccess {
		t.Errorf("client %d: reply does not answer its query %s:\n%v", i, name, r)
	}
}

// TestUDPBatchFullWrite has more replies finish together than one sendmmsg
// takes, so that the workers past it write their own: every reply must
// still reach its client once.
func TestUDPBatchFullWrite(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		select { // a handler waits under ctx (pipeline.Handler)
		case <-release:
		case <-ctx.Done():
		}
		return answerA(ctx, req)
	}}
	cfg := testConfig(t, fam4, h)
	cfg.Sockets = 1
	l, err := listenUDP(cfg, udpOptions{batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(fam4.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const queries = 5 * writeBatches * 2
	for n := range queries {
		q := query("example.org.", dns.TypeA)
		q.Id = uint16(n)
		wire, _ := q.Pack()
		if _, err := c.WriteToUDPAddrPort(wire, l.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	seen := make(map[uint16]bool)
	buf := make([]byte, dns.MaxMsgSize)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range queries {
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d replies: %v", len(seen), err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil || seen[r.Id] || int(r.Id) >= queries {
			t.Fatalf("reply %v (%v), seen %v", r, err, seen)
		}
		seen[r.Id] = true
	}
}
