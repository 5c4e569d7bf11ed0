package middleware

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/miekg/dns"
)

// TestForwardUpstreamWire forwards over a real UDP exchanger to a
// loopback upstream: the query on the wire carries the options of the
// message path (ECS, tags, trace id, loop mark, the 1232-byte buffer,
// DO), and the answer comes back with its wire form in req.Upstream,
// the same message as the one returned, AA cleared and RA set in both,
// to be packed with its names compressed.
func TestForwardUpstreamWire(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *dns.Msg, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			got <- q
			r := new(dns.Msg).SetReply(q)
			r.Authoritative, r.RecursionAvailable = true, false
			r.Answer = []dns.RR{mustRR(t, "example.org. 300 IN A 192.0.2.1")}
			r.SetEdns0(1232, true)
			b, _ := r.Pack()
			pc.WriteToUDPAddrPort(b, from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	ex := transport.NewUDP(pc.LocalAddr().(*net.UDPAddr).AddrPort(), nil)
	t.Cleanup(func() { ex.Close() })

	f := forwardTo(t, ex, NewLoop(slog.New(slog.DiscardHandler)))
	req := request(dns.TypeA, true, true, false)
	req.ECS = netip.MustParsePrefix("198.51.100.0/24")
	req.Tags = []string{"team=a"}
	req.TraceID = "0af7651916cd43dd8448eb211c80319c"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := f.ServeDNS(ctx, req)
	if err != nil {
		t.Fatal(err)
	}

	q := <-got
	opt := q.IsEdns0()
	if opt == nil || opt.UDPSize() != transport.EDNSBufferSize || !opt.Do() {
		t.Fatalf("upstream query OPT %v, want buffer %d and DO", opt, transport.EDNSBufferSize)
	}
	codes := map[uint16]bool{}
	for _, o := range opt.Option {
		codes[o.Option()] = true
	}
	for _, c := range []uint16{dns.EDNS0SUBNET, DefaultTagOptionCode, DefaultTraceOptionCode, LoopOptionCode} {
		if !codes[c] {
			t.Errorf("upstream query lacks option %d: %v", c, opt)
		}
	}
	if m.Authoritative || !m.RecursionAvailable || m.Id != req.Msg.Id || !m.Compress {
		t.Errorf("answer AA=%t RA=%t id %d compress %t, want AA clear, RA set, id %d, compressed",
			m.Authoritative, m.RecursionAvailable, m.Id, m.Compress, req.Msg.Id)
	}
	if req.Upstream.Msg != m || req.Upstream.Wire == nil {
		t.Fatal("the answer's wire form was not handed on")
	}
	w := new(dns.Msg)
	if err := w.Unpack(req.Upstream.Wire); err != nil {
		t.Fatal(err)
	}
	if w.String() != m.String() {
		t.Errorf("wire form unpacks to\n%v\nanswer is\n%v", w, m)
	}
	if req.Outcome.Source != pipeline.SourceUpstream {
		t.Errorf("source %v", req.Outcome.Source)
	}
}

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}
