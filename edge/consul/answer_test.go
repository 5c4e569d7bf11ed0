package consul

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

func ask(t *testing.T, b *Backend, name string, qtype uint16, size int) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := b.answer(ctx, query(name, qtype, 0), dns.CanonicalName(name), size)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}

func records(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if soa, ok := rr.(*dns.SOA); ok {
			soa = dns.Copy(soa).(*dns.SOA)
			soa.Serial = 0
			rr = soa
		}
		out = append(out, strings.ReplaceAll(strings.Replace(rr.String(), " 0 3600 600", " SERIAL 3600 600", 1), "\t", " "))
	}
	slices.Sort(out)
	return out
}

func TestAnswers(t *testing.T) {
	v6 := entry("n2", "10.0.0.2", "", 81, api.HealthPassing, "v2")
	v6.Node.TaggedAddresses["lan_ipv6"] = "2001:db8::2"
	own := entry("n3", "10.0.0.3", "192.0.2.3", 82, api.HealthPassing)
	own.Service.TaggedAddresses = map[string]api.ServiceAddress{"lan_ipv6": {Address: "2001:db8::3", Port: 82}}
	f := &fakeConsul{services: map[string][]*api.ServiceEntry{
		"web": {
			entry("n1", "10.0.0.1", "", 80, api.HealthPassing, "v1", "Primary"),
			v6, own,
			entry("n4", "10.0.0.4", "", 83, api.HealthWarning, "v1"),
			entry("n5", "10.0.0.5", "", 84, api.HealthCritical, "v1"),
		},
	}}
	client := startFake(t, f)
	off := false
	ttl := Config{TTL: TTLConfig{Default: 5 * time.Second, Services: map[string]time.Duration{"web": 30 * time.Second}}}
	passing := newTestBackend(t, ttl, client, clockwork.NewRealClock())
	warnCfg := ttl
	warnCfg.OnlyPassing = &off
	warning := newTestBackend(t, warnCfg, client, clockwork.NewRealClock())
	tests := []struct {
		name  string
		b     *Backend
		qname string
		qtype uint16
		rcode int
		ans   []string
		extra []string
	}{
		{"A passing only", passing, "web.service.consul.", dns.TypeA, dns.RcodeSuccess,
			[]string{"web.service.consul. 30 IN A 10.0.0.1", "web.service.consul. 30 IN A 10.0.0.2", "web.service.consul. 30 IN A 192.0.2.3"}, nil},
		{"A with warning", warning, "web.service.consul.", dns.TypeA, dns.RcodeSuccess,
			[]string{"web.service.consul. 30 IN A 10.0.0.1", "web.service.consul. 30 IN A 10.0.0.2", "web.service.consul. 30 IN A 10.0.0.4", "web.service.consul. 30 IN A 192.0.2.3"}, nil},
		{"AAAA from tagged addresses", passing, "web.service.consul.", dns.TypeAAAA, dns.RcodeSuccess,
			[]string{"web.service.consul. 30 IN AAAA 2001:db8::2", "web.service.consul. 30 IN AAAA 2001:db8::3"}, nil},
		{"tag", passing, "v1.web.service.consul.", dns.TypeA, dns.RcodeSuccess,
			[]string{"v1.web.service.consul. 30 IN A 10.0.0.1"}, nil},
		{"tag case-insensitive", passing, "primary.web.service.dc1.consul.", dns.TypeA, dns.RcodeSuccess,
			[]string{"primary.web.service.dc1.consul. 30 IN A 10.0.0.1"}, nil},
		{"tag with warning", warning, "v1.web.service.consul.", dns.TypeA, dns.RcodeSuccess,
			[]string{"v1.web.service.consul. 30 IN A 10.0.0.1", "v1.web.service.consul. 30 IN A 10.0.0.4"}, nil},
		{"unknown tag", passing, "v9.web.service.consul.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"SRV with weights", warning, "_web._tcp.service.consul.", dns.TypeSRV, dns.RcodeSuccess,
			[]string{
				"_web._tcp.service.consul. 30 IN SRV 1 1 83 n4.node.consul.",
				"_web._tcp.service.consul. 30 IN SRV 1 10 80 n1.node.consul.",
				"_web._tcp.service.consul. 30 IN SRV 1 10 81 n2.node.consul.",
				"_web._tcp.service.consul. 30 IN SRV 1 10 82 c0000203.addr.consul.",
			},
			[]string{
				"c0000203.addr.consul. 30 IN A 192.0.2.3", "c0000203.addr.consul. 30 IN AAAA 2001:db8::3",
				"n1.node.consul. 30 IN A 10.0.0.1", "n2.node.consul. 30 IN A 10.0.0.2", "n2.node.consul. 30 IN AAAA 2001:db8::2",
				"n4.node.consul. 30 IN A 10.0.0.4",
			}},
		{"SRV by tag", passing, "_web._v2.service.consul.", dns.TypeSRV, dns.RcodeSuccess,
			[]string{"_web._v2.service.consul. 30 IN SRV 1 10 81 n2.node.consul."},
			[]string{"n2.node.consul. 30 IN A 10.0.0.2", "n2.node.consul. 30 IN AAAA 2001:db8::2"}},
		{"NODATA", passing, "web.service.consul.", dns.TypeTXT, dns.RcodeSuccess, nil, nil},
		{"no such service", passing, "db.service.consul.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"bad form", passing, "web.consul.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"apex SOA", passing, "consul.", dns.TypeSOA, dns.RcodeSuccess, []string{"consul. 0 IN SOA ns.consul. hostmaster.consul. SERIAL 3600 600 86400 0"}, nil},
		{"apex NODATA", passing, "consul.", dns.TypeA, dns.RcodeSuccess, nil, nil},
		{"addr", passing, "c0000203.addr.consul.", dns.TypeA, dns.RcodeSuccess, []string{"c0000203.addr.consul. 0 IN A 192.0.2.3"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ask(t, tt.b, tt.qname, tt.qtype, 0)
			if r.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s\n%v", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode], r.Msg)
			}
			if got := records(r.Answer); !slices.Equal(got, tt.ans) {
				t.Errorf("answer\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.ans, "\n"))
			}
			if got := records(r.Extra); !slices.Equal(got, tt.extra) {
				t.Errorf("additional\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.extra, "\n"))
			}
			if len(r.Answer) == 0 {
				if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA || r.Ns[0].Header().Ttl != 0 {
					t.Errorf("negative answer without a SOA of TTL 0: %v", r.Ns)
				}
			}
		})
	}
}

func manyInstances(n int) []*api.ServiceEntry {
	var es []*api.ServiceEntry
	for i := range n {
		es = append(es, entry(fmt.Sprintf("node-with-a-long-name-%02d", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), "", 8000+i, api.HealthPassing))
	}
	return es
}

// TestTruncation: an answer bigger than the client's size is cut to
// what fits, additional records first, with TC set once an answer record
// went; one that fits is whole.
func TestTruncation(t *testing.T) {
	f := &fakeConsul{services: map[string][]*api.ServiceEntry{"big": manyInstances(60), "small": manyInstances(3)}}
	b := newTestBackend(t, Config{}, startFake(t, f), clockwork.NewRealClock())
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		size      int
		tc        bool
		answers   int // exact when > 0
		noExtra   bool
		fitsWhole bool
	}{
		{"A cut to 512", "big.service.consul.", dns.TypeA, 512, true, 0, false, false},
		{"A whole in 64k", "big.service.consul.", dns.TypeA, 65535, false, 60, false, true},
		{"SRV cut to 512 drops additional first", "_big._tcp.service.consul.", dns.TypeSRV, 512, true, 0, true, false},
		{"SRV small fits", "_small._tcp.service.consul.", dns.TypeSRV, 512, false, 3, false, true},
		{"A small fits", "small.service.consul.", dns.TypeA, 512, false, 3, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ask(t, b, tt.qname, tt.qtype, tt.size)
			if r.Len() > tt.size {
				t.Errorf("answer of %d bytes for a client taking %d", r.Len(), tt.size)
			}
			if r.Truncated != tt.tc {
				t.Errorf("TC %v, want %v", r.Truncated, tt.tc)
			}
			if tt.answers > 0 && len(r.Answer) != tt.answers {
				t.Errorf("%d answers, want %d", len(r.Answer), tt.answers)
			}
			if tt.tc && (len(r.Answer) == 0 || len(r.Answer) >= 60) {
				t.Errorf("truncated answer has %d records, want some but not all", len(r.Answer))
			}
			if tt.noExtra && len(r.Extra) != 0 {
				t.Errorf("additional kept (%d) while answers were cut", len(r.Extra))
			}
		})
	}
}

// TestShuffle: repeated answers hold the same records in varying order,
// so that clients taking the first spread over the instances; a cut
// answer is a varying subset.
func TestShuffle(t *testing.T) {
	f := &fakeConsul{services: map[string][]*api.ServiceEntry{"web": manyInstances(8), "big": manyInstances(60)}}
	b := newTestBackend(t, Config{}, startFake(t, f), clockwork.NewRealClock())
	firsts := make(map[string]int)
	var want []string
	for range 200 {
		r := ask(t, b, "web.service.consul.", dns.TypeA, 0)
		got := records(r.Answer)
		if want == nil {
			want = got
		} else if !slices.Equal(got, want) {
			t.Fatalf("records changed between answers:\n%v\n%v", got, want)
		}
		firsts[r.Answer[0].(*dns.A).A.String()]++
	}
	if len(firsts) < 6 {
		t.Errorf("first record over 200 answers: %v; want most of the 8 instances", firsts)
	}
	subsets := make(map[string]bool)
	for range 20 {
		subsets[strings.Join(records(ask(t, b, "big.service.consul.", dns.TypeA, 512).Answer), ",")] = true
	}
	if len(subsets) < 2 {
		t.Errorf("truncated answers always hold the same subset")
	}
}

// TestStaleView: with Consul failing, answers come from the last view;
// past stale_after they carry EDE 3; once Consul answers again they do not.
func TestStaleView(t *testing.T) {
	f := &fakeConsul{services: map[string][]*api.ServiceEntry{"web": {entry("n1", "10.0.0.1", "", 80, api.HealthPassing)}}}
	fc := clockwork.NewFakeClock()
	b := newTestBackend(t, Config{StaleAfter: 3 * time.Second}, startFake(t, f), fc)
	if r := ask(t, b, "web.service.consul.", dns.TypeA, 0); len(r.Answer) != 1 || r.stale {
		t.Fatalf("first answer %v stale %v", r.Msg, r.stale)
	}
	f.setFail(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	step := func(n int) {
		for range n {
			if err := fc.BlockUntilContext(ctx, 2); err != nil {
				t.Fatal(err)
			}
			fc.Advance(250 * time.Millisecond)
		}
	}
	step(4) // 1 s: fresh enough
	if r := ask(t, b, "web.service.consul.", dns.TypeA, 0); len(r.Answer) != 1 || r.stale {
		t.Fatalf("after 1 s of failures: %v stale %v", r.Msg, r.stale)
	}
	step(12) // 4 s
	r := ask(t, b, "web.service.consul.", dns.TypeA, 0)
	if len(r.Answer) != 1 || !r.stale {
		t.Fatalf("after 4 s of failures: %v stale %v", r.Msg, r.stale)
	}
	var ede *dns.EDNS0_EDE
	for _, rr := range r.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			for _, o := range opt.Option {
				if e, ok := o.(*dns.EDNS0_EDE); ok {
					ede = e
				}
			}
		}
	}
	if ede == nil || ede.InfoCode != dns.ExtendedErrorCodeStaleAnswer {
		t.Errorf("stale answer without EDE 3: %v", r.Extra)
	}
	f.setFail(false)
	step(24) // at most 5 s of backoff, then a fresh view
	if r := ask(t, b, "web.service.consul.", dns.TypeA, 0); len(r.Answer) != 1 || r.stale {
		t.Fatalf("after recovery: %v stale %v", r.Msg, r.stale)
	}
}

// TestIdleWatchStops: a watch nobody asks for is stopped after
// idle_after, and started again by the next query.
func TestIdleWatchStops(t *testing.T) {
	f := &fakeConsul{services: map[string][]*api.ServiceEntry{"web": {entry("n1", "10.0.0.1", "", 80, api.HealthPassing)}},
		index: func(int) uint64 { return 7 }}
	fc := clockwork.NewFakeClock()
	b := newTestBackend(t, Config{IdleAfter: time.Minute}, startFake(t, f), fc)
	ask(t, b, "web.service.consul.", dns.TypeA, 0)
	ask(t, b, "n1.node.consul.", dns.TypeA, 0) // the fake knows no nodes: NXDOMAIN, but a watch
	if n := b.Watches(); n != 2 {
		t.Fatalf("%d watches, want 2", n)
	}
	fc.Advance(30 * time.Second)
	b.reapIdle()
	if n := b.Watches(); n != 2 {
		t.Fatalf("%d watches after 30 s idle, want 2", n)
	}
	fc.Advance(time.Minute)
	b.reapIdle() // what the reaper's ticker does
	if n := b.Watches(); n != 0 {
		t.Fatalf("%d watches after 90 s idle, want 0", n)
	}
	if b.stats.stopped.Load() != 2 {
		t.Errorf("%d watches stopped, want 2", b.stats.stopped.Load())
	}
	if r := ask(t, b, "web.service.consul.", dns.TypeA, 0); len(r.Answer) != 1 || b.Watches() != 1 {
		t.Errorf("after idling: %v, %d watches", r.Msg, b.Watches())
	}
}
