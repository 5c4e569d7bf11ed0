package tsig

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// BenchmarkStage: what the stage costs an unsigned query (the common
// case: it is always in the chain), and a signed one: verification and
// signing the reply.
func BenchmarkStage(b *testing.B) {
	kr, err := New(Config{Keys: []KeySpec{{Name: "a.key.", Secret: Secret(secretA)}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	reply := new(dns.Msg)
	h := NewStage(kr, NewMetrics(), func(req *pipeline.Request) bool { return req.RequireTSIG }).Middleware(
		pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return reply, nil }))
	q := new(dns.Msg)
	q.SetQuestion("www.example.", dns.TypeA)
	q.SetEdns0(1232, false)
	b.Run("unsigned", func(b *testing.B) {
		b.ReportAllocs()
		req := new(pipeline.Request)
		for b.Loop() {
			*req = pipeline.Request{Msg: q}
			if _, err := h.ServeDNS(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	sq := q.Copy()
	sq.SetTsig("a.key.", dns.HmacSHA256, 300, time.Now().Unix())
	wire, _, err := dns.TsigGenerate(sq, secretA, "", false)
	if err != nil {
		b.Fatal(err)
	}
	if err := sq.Unpack(wire); err != nil {
		b.Fatal(err)
	}
	ans := new(dns.Msg)
	ans.SetReply(q)
	ans.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "www.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{192, 0, 2, 1}}}
	b.Run("signed verify and sign", func(b *testing.B) {
		b.ReportAllocs()
		req := new(pipeline.Request)
		for b.Loop() {
			*req = pipeline.Request{Msg: sq, Wire: wire}
			if _, err := h.ServeDNS(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			if req.TSIG != pipeline.TSIGVerified {
				b.Fatal(req.TSIG)
			}
			if _, err := req.Signer.Sign(ans); err != nil {
				b.Fatal(err)
			}
		}
	})
}
