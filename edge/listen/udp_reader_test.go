package listen

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// waitKinds are the two ways a handler says it waits (pipeline.Handler):
// on ctx.Done(), or with pipeline.Waits before waiting on something else.
var waitKinds = []struct {
	name string
	wait func(ctx context.Context, release <-chan struct{})
}{
	{"done", func(ctx context.Context, release <-chan struct{}) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}},
	{"waits", func(ctx context.Context, release <-chan struct{}) {
		pipeline.Waits(ctx)
		<-release
	}},
}

var inlineModes = []struct {
	name string
	mode inlineMode
}{
	{"in place", inlineAlways},
	{"workers", inlineNever},
	{"auto", inlineAuto},
}

// TestUDPReaderHandsOn: a query that waits does not hold up the queries
// after it on its socket, whether batches are served in place (the
// reading goes to another goroutine when the query says it waits) or on
// workers. The waiting query is answered once released.
func TestUDPReaderHandsOn(t *testing.T) {
	t.Parallel()
	for _, m := range inlineModes {
		for _, k := range waitKinds {
			t.Run(m.name+"/"+k.name, func(t *testing.T) {
				t.Parallel()
				started, release := make(chan struct{}), make(chan struct{})
				h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
					if req.Msg.Question[0].Name == "slow.example." {
						close(started)
						k.wait(ctx, release)
					}
					return answerA(ctx, req)
				}}
				l := readerListener(t, m.mode, h)
				c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(l.Addr()))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				send := func(name string, id uint16) {
					q := query(name, dns.TypeA)
					q.Id = id
					wire, _ := q.Pack()
					if _, err := c.Write(wire); err != nil {
						t.Fatal(err)
					}
				}
				recv := func() uint16 { return readID(t, c) }
				c.SetDeadline(time.Now().Add(5 * time.Second))
				send("slow.example.", 0)
				<-started
				const fast = 40 // more than a batch
				for id := range fast {
					send(fmt.Sprintf("q%d.example.", id), uint16(id+1))
				}
				for range fast {
					if id := recv(); id == 0 {
						t.Fatal("the waiting query was answered before it was released")
					}
				}
				close(release)
				if id := recv(); id != 0 {
					t.Fatalf("reply %d after the release, want the waiting query's", id)
				}
			})
		}
	}
}

// TestUDPReaderEveryReplyOnce has several clients send at once, half their
// queries waiting until all the others were answered: each query gets one
// reply, its own, while the reading moves between goroutines (run it
// under the race detector).
func TestUDPReaderEveryReplyOnce(t *testing.T) {
	t.Parallel()
	for _, m := range inlineModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				if req.Msg.Id%2 == 1 {
					waitKinds[int(req.Msg.Id/2)%2].wait(ctx, release)
				}
				m := new(dns.Msg)
				m.SetReply(req.Msg)
				m.Answer = []dns.RR{mustRR(req.Msg.Question[0].Name + " 60 IN A 192.0.2.1")}
				return m, nil
			}}
			l := readerListener(t, m.mode, h)
			const clients, perClient = 4, 24 // within a socket buffer
			var fastDone sync.WaitGroup
			fastDone.Add(clients)
			go func() { fastDone.Wait(); close(release) }()
			var wg sync.WaitGroup
			for i := range clients {
				wg.Go(func() {
					c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(l.Addr()))
					if err != nil {
						t.Error(err)
						fastDone.Done()
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					for n := range perClient {
						q := query(fmt.Sprintf("c%d-q%d.example.", i, n), dns.TypeA)
						q.Id = uint16(n)
						wire, _ := q.Pack()
						if _, err := c.Write(wire); err != nil {
							t.Error(err)
						}
					}
					seen := make(map[uint16]bool)
					fast := 0
					buf := make([]byte, dns.MaxMsgSize)
					for len(seen) < perClient {
						n, err := c.Read(buf)
						if err != nil {
							t.Errorf("client %d after %d replies: %v", i, len(seen), err)
							if fast < perClient/2 {
								fastDone.Done()
							}
							return
						}
						r := new(dns.Msg)
						err = r.Unpack(buf[:n])
						want := fmt.Sprintf("c%d-q%d.example.", i, r.Id)
						if err != nil || seen[r.Id] || int(r.Id) >= perClient ||
							len(r.Answer) != 1 || r.Answer[0].Header().Name != want {
							t.Errorf("client %d: reply %v (%v), want one for %s, seen %v", i, r, err, want, seen)
							if fast < perClient/2 {
								fastDone.Done()
							}
							return
						}
						seen[r.Id] = true
						if r.Id%2 == 0 {
							if fast++; fast == perClient/2 {
								fastDone.Done()
							}
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestUDPReaderChoose: batches are served in place only while few of the
// socket's queries wait, and never with one P (see udpReader).
func TestUDPReaderChoose(t *testing.T) {
	tests := []struct {
		mode   inlineMode
		waited uint64
		procs  int
		want   bool
	}{
		{inlineAlways, inlineWindow, 1, true},
		{inlineNever, 0, 4, false},
		{inlineAuto, 0, 2, true},
		{inlineAuto, inlineWindow/4 - 1, 2, true},
		{inlineAuto, inlineWindow / 4, 2, false},
		{inlineAuto, inlineWindow, 8, false},
		{inlineAuto, 0, 1, false},
	}
	for _, tt := range tests {
		r := &udpReader{l: &UDP{inline: tt.mode}, s: &udpSocket{}, served: inlineWindow, procs: func() int { return tt.procs }}
		if got := r.choose(tt.waited); got != tt.want {
			t.Errorf("mode %d, %d of %d waited, %d Ps: in place %t, want %t",
				tt.mode, tt.waited, inlineWindow, tt.procs, got, tt.want)
		}
	}
}

// readerListener serves h on one UDP socket on IPv4 loopback, its
// batches served as mode says.
func readerListener(t *testing.T, mode inlineMode, h pipeline.Handler) *UDP {
	t.Helper()
	cfg := testConfig(t, fam4, h)
	cfg.Sockets = 1
	l, err := listenUDP(cfg, udpOptions{inline: mode})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	return l
}

// readID reads one reply from c and returns its ID.
func readID(t *testing.T, c net.Conn) uint16 {
	t.Helper()
	buf := make([]byte, dns.MaxMsgSize)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return r.Id
}
