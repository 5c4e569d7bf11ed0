//go:build unix

package listen

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// BenchmarkUDPServe measures a query round trip through the UDP listener
// with a trivial handler: loopback clients, each waiting for its answer
// before sending the next query. allocs/op counts both sides; the client
// packs once and reads into a reused buffer, so nearly all of them are
// the listener's.
func BenchmarkUDPServe(b *testing.B) {
	h := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return m, nil
	})
	cfg := Config{
		Addr:    fam4.addr,
		Handler: func() pipeline.Handler { return h },
	}
	s := start(b, "udp", cfg)
	q := query("example.org.", dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(4)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("udp", s.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 512)
		for pb.Next() {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(wire); err != nil {
				b.Error(err)
				return
			}
			n, err := c.Read(buf)
			if err != nil {
				b.Error(err)
				return
			}
			if n < headerLen || buf[0] != wire[0] || buf[1] != wire[1] {
				b.Error("reply does not match the query")
				return
			}
		}
	})
	b.StopTimer()
	// CPU time of the process, client included, is steadier than wall
	// time on a shared machine.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the user and system CPU time the process used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUDPCacheHit is BenchmarkUDPServe with the answer cache in
// front of an upstream that is asked once per name: every timed query is
// a cache hit over the real listener, Finish and pack included. Queries
// carry EDNS, as most stubs' do.
func BenchmarkUDPCacheHit(b *testing.B) {
	c, err := cache.New(cache.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	up := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		name := req.Msg.Question[0].Name
		m.Answer = []dns.RR{
			&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 3600}, Target: "web.example.org."},
			&dns.A{Hdr: dns.RR_Header{Name: "web.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: []byte{192, 0, 2, 1}},
		}
		m.SetEdns0(1232, false)
		return m, nil
	})
	h := pipeline.Chain(up, c.Middleware())
	cfg := Config{
		Addr:    fam4.addr,
		Handler: func() pipeline.Handler { return h },
	}
	s := start(b, "udp", cfg)
	const names = 64
	wires := make([][]byte, names)
	for i := range wires {
		q := queryEDNS(fmt.Sprintf("host%d.example.org.", i), dns.TypeA, 1232, false)
		if wires[i], err = q.Pack(); err != nil {
			b.Fatal(err)
		}
		if _, err := exchangeRaw("udp", s.Addr(), wires[i], 2*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.SetParallelism(4)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("udp", s.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 512)
		i := seq.Add(17)
		for pb.Next() {
			i++
			wire := wires[i%names]
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(wire); err != nil {
				b.Error(err)
				return
			}
			n, err := c.Read(buf)
			if err != nil {
				b.Error(err)
				return
			}
			if n < headerLen || buf[0] != wire[0] || buf[1] != wire[1] || buf[7] != 2 {
				b.Error("reply does not answer the query")
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkTCPServe is BenchmarkUDPServe over TCP: each client keeps one
// connection and waits for each answer before sending the next query.
func BenchmarkTCPServe(b *testing.B) {
	h := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return m, nil
	})
	cfg := Config{
		Addr:    fam4.addr,
		Handler: func() pipeline.Handler { return h },
	}
	s := start(b, "tcp", cfg)
	q := query("example.org.", dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		b.Fatal(err)
	}
	frame := append([]byte{byte(len(wire) >> 8), byte(len(wire))}, wire...)
	b.ReportAllocs()
	b.SetParallelism(4)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 512)
		for pb.Next() {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(frame); err != nil {
				b.Error(err)
				return
			}
			if _, err := io.ReadFull(c, buf[:2]); err != nil {
				b.Error(err)
				return
			}
			n := int(buf[0])<<8 | int(buf[1])
			if n < headerLen || n > len(buf) {
				b.Errorf("reply of %d bytes", n)
				return
			}
			if _, err := io.ReadFull(c, buf[:n]); err != nil {
				b.Error(err)
				return
			}
			if buf[0] != wire[0] || buf[1] != wire[1] {
				b.Error("reply does not match the query")
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
