package transporttest

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestBootstrap(t *testing.T) {
	t.Parallel()
	b := StartBootstrap(t, `
dns.test. 30 IN A    127.0.0.1
dns.test. 30 IN AAAA ::1
`)
	type step struct {
		set     string // when not empty, Set these records first
		network string
		qname   string
		qtype   uint16
		want    string // rcode, then each answer as "value/ttl"
	}
	steps := []step{
		{network: "udp4", qname: "dns.test.", qtype: dns.TypeA, want: "NOERROR 127.0.0.1/30"},
		{network: "tcp4", qname: "dns.test.", qtype: dns.TypeAAAA, want: "NOERROR ::1/30"},
		{network: "udp4", qname: "other.test.", qtype: dns.TypeA, want: "NXDOMAIN"},
		{set: "dns.test. 5 IN A 127.0.0.2\ndns.test. 5 IN A 127.0.0.3\n", network: "udp4", qname: "dns.test.", qtype: dns.TypeA, want: "NOERROR 127.0.0.2/5 127.0.0.3/5"},
		{network: "tcp4", qname: "dns.test.", qtype: dns.TypeAAAA, want: "NOERROR"},
	}
	for i, st := range steps {
		if st.set != "" {
			b.Set(st.set)
		}
		r, err := exchangeAddr(st.network, b.Addr(), newQuery(st.qname, st.qtype, 0), answerTimeout)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got := []string{dns.RcodeToString[r.Rcode]}
		for _, rr := range r.Answer {
			var v string
			switch rr := rr.(type) {
			case *dns.A:
				v = rr.A.String()
			case *dns.AAAA:
				v = rr.AAAA.String()
			}
			got = append(got, v+"/"+itoa(rr.Header().Ttl))
		}
		if g := strings.Join(got, " "); g != st.want {
			t.Errorf("step %d %s %s over %s: got %q, want %q", i, st.qname, dns.TypeToString[st.qtype], st.network, g, st.want)
		}
		if got, want := b.Count(), int64(i+1); got != want {
			t.Errorf("step %d: Count = %d, want %d", i, got, want)
		}
	}
}

func TestBootstrapBadRecords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(tb testing.TB)
	}{
		{name: "start", run: func(tb testing.TB) { StartBootstrap(tb, "dns.test. IN A nope\n") }},
		{name: "set", run: func(tb testing.TB) {
			b := StartBootstrap(tb, "dns.test. IN A 127.0.0.1\n")
			b.Set("dns.test. IN A nope\n")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeTB{}
			f.run(tt.run)
			f.cleanup()
			if !strings.Contains(f.fatal, "parse zone") {
				t.Errorf("fatal = %q, want a parse zone error", f.fatal)
			}
		})
	}
}
