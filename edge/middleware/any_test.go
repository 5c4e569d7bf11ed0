package middleware

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

func TestANY(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		qtype     uint16
		allow     bool
		forwarded bool // next was called
	}{
		{name: "ANY gets the RFC 8482 answer", qtype: dns.TypeANY},
		{name: "ANY allowed by policy is forwarded", qtype: dns.TypeANY, allow: true, forwarded: true},
		{name: "A is forwarded", qtype: dns.TypeA, forwarded: true},
		{name: "HINFO is forwarded", qtype: dns.TypeHINFO, forwarded: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			called := false
			next := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
				called = true
				m := new(dns.Msg)
				m.SetReply(req.Msg)
				return m, nil
			})
			q := new(dns.Msg)
			q.SetQuestion("Example.ORG.", tt.qtype)
			m, err := ANY(next).ServeDNS(context.Background(), &pipeline.Request{Msg: q, AllowANY: tt.allow})
			if err != nil {
				t.Fatal(err)
			}
			if called != tt.forwarded {
				t.Fatalf("next called %v, want %v", called, tt.forwarded)
			}
			if tt.forwarded {
				return
			}
			if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Id != q.Id || !m.Response {
				t.Fatalf("reply %v", m)
			}
			h, ok := m.Answer[0].(*dns.HINFO)
			if !ok || h.Cpu != "RFC8482" || h.Os != "" || h.Hdr.Name != "Example.ORG." || h.Hdr.Ttl != ANYTTL {
				t.Errorf("answer %v, want HINFO \"RFC8482\" \"\"", m.Answer[0])
			}
		})
	}
}
