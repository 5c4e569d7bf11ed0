package pebbletest

import (
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestDNS checks what pebble is told about the names it validates.
func TestDNS(t *testing.T) {
	addr, stop := startDNS(t)
	defer stop()
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		rcode   int
		answers []string
	}{
		{"A in zone", "dot.dnsedge.test.", dns.TypeA, dns.RcodeSuccess, []string{"dot.dnsedge.test.\t60\tIN\tA\t127.0.0.1"}},
		{"zone apex", "dnsedge.test.", dns.TypeA, dns.RcodeSuccess, []string{"dnsedge.test.\t60\tIN\tA\t127.0.0.1"}},
		{"AAAA in zone", "dot.dnsedge.test.", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"CAA in zone", "dot.dnsedge.test.", dns.TypeCAA, dns.RcodeSuccess, nil},
		{"outside", "dot.example.", dns.TypeA, dns.RcodeNameError, nil},
	}
	c := &dns.Client{Timeout: 3 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := new(dns.Msg).SetQuestion(tt.qname, tt.qtype)
			m, _, err := c.Exchange(q, addr)
			if err != nil {
				t.Fatal(err)
			}
			if m.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
			}
			var got []string
			for _, rr := range m.Answer {
				got = append(got, rr.String())
			}
			if len(got) != len(tt.answers) || (len(got) > 0 && got[0] != tt.answers[0]) {
				t.Errorf("answers %q, want %q", got, tt.answers)
			}
		})
	}
}

// TestStartStop starts pebble, reads its roots and stops it, twice over,
// leaving no goroutine behind. Not parallel: it counts goroutines.
func TestStartStop(t *testing.T) {
	before := runtime.NumGoroutine()
	p := Start(t)
	if p.DirURL == "" || p.CARoot == "" || p.HTTPPort == 0 || p.TLSPort == 0 {
		t.Fatalf("incomplete: %+v", p)
	}
	roots, inter := p.Roots(t), p.Intermediates(t)
	if roots.Equal(inter) {
		t.Error("roots and intermediates are the same pool")
	}
	p.Stop()
	p.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before Start, %d after Stop:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
