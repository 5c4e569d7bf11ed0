package middleware

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

func TestVersion(t *testing.T) {
	next := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetRcode(req.Msg, dns.RcodeNameError)
		return m, nil
	})
	h := Version("1.2.3")(next)
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		qclass uint16
		want   string // TXT answered; "" means passed to next
	}{
		{"version.bind", "version.bind.", dns.TypeTXT, dns.ClassCHAOS, "1.2.3"},
		{"upper case", "VERSION.BIND.", dns.TypeTXT, dns.ClassCHAOS, "1.2.3"},
		{"version.server", "version.server.", dns.TypeTXT, dns.ClassCHAOS, "1.2.3"},
		{"IN class passes", "version.bind.", dns.TypeTXT, dns.ClassINET, ""},
		{"other CH name passes", "hostname.bind.", dns.TypeTXT, dns.ClassCHAOS, ""},
		{"A passes", "version.bind.", dns.TypeA, dns.ClassCHAOS, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion(tt.qname, tt.qtype)
			q.Question[0].Qclass = tt.qclass
			m, err := h.ServeDNS(context.Background(), &pipeline.Request{Msg: q})
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if m.Rcode != dns.RcodeNameError {
					t.Fatalf("not passed to next: %v", m)
				}
				return
			}
			if len(m.Answer) != 1 || m.Answer[0].(*dns.TXT).Txt[0] != tt.want {
				t.Fatalf("answer %v, want TXT %q", m.Answer, tt.want)
			}
		})
	}
	if Version("")(next) == nil {
		t.Fatal("empty version: nil handler")
	}
}
