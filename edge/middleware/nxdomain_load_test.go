package middleware

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

func TestNXDomainConcurrent(t *testing.T) {
	clock := newNXClock()
	up := &nxUpstream{t: t, probe: suffixExists}
	nx, ok := answer(t, dns.RcodeNameError, nil, nxSOA), answer(t, dns.RcodeSuccess, []string{"x.internal. 60 IN A 192.0.2.1"})
	up.query = func(req *pipeline.Request) (*dns.Msg, error) {
		if req.Question().Name[1]%2 == 0 {
			return nx(req)
		}
		return ok(req)
	}
	n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}, MaxEntries: 8}, clock, up)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				if w == 0 {
					clock.advance(time.Second)
				}
				d := (w + i) % 10
				req := nxQuery(fmt.Sprintf("n%d.x%d.internal.", d, i%7), dns.TypeA, fmt.Sprint(i%2))
				m, err := h.ServeDNS(context.Background(), req)
				if err != nil {
					t.Error(err)
					return
				}
				if want := map[bool]int{true: dns.RcodeNameError, false: dns.RcodeSuccess}[d%2 == 0]; m.Rcode != want {
					t.Errorf("%s: rcode %d, want %d", req.Question().Name, m.Rcode, want)
					return
				}
			}
		})
	}
	wg.Wait()
	waitProbes(t, n)
	if got := n.count.Load(); got > 8 || int(got) != n.lru.Len() {
		t.Fatalf("%d entries counted, %d listed, bound 8", got, n.lru.Len())
	}
}

func TestNXDomainMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	up := &nxUpstream{t: t, query: answer(t, dns.RcodeNameError, nil, nxSOA), probe: suffixExists}
	n, err := NewNXDomain(NXDomainConfig{Suffixes: []string{"internal."}}, newNXClock().now, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	h := n.Middleware()(up)
	for range 3 {
		serve(t, h, up, nxQuery("a.internal.", dns.TypeA, ""))
	}
	waitProbes(t, n)
	want := map[string]float64{
		"dnsedge_nxdomain_cache_hits_total":   2,
		"dnsedge_nxdomain_cache_probes_total": 1,
		"dnsedge_nxdomain_cache_entries":      1,
	}
	if got := gatherNX(t, reg); !equalMetrics(got, want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
	// The cache of a new generation takes the metrics over.
	n2, err := NewNXDomain(NXDomainConfig{Suffixes: []string{"internal."}}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	for name := range want {
		want[name] = 0
	}
	if got := gatherNX(t, reg); !equalMetrics(got, want) {
		t.Fatalf("metrics after a new generation %v, want %v", got, want)
	}
}

func gatherNX(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}

func equalMetrics(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestNXDomainConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  NXDomainConfig
		want []string // field paths of the problems
	}{
		{"off", NXDomainConfig{}, nil},
		{"full", NXDomainConfig{Suffixes: []string{"internal", "Corp.Example.", "_svc.cluster.local."}, TTL: time.Hour, MaxEntries: 5}, nil},
		{"bad suffixes", NXDomainConfig{Suffixes: []string{"internal.", "", "*.corp", "a b.", ".", "INTERNAL", "x..y", ".lan"}}, []string{
			"suffixes[1]", "suffixes[2]", "suffixes[3]", "suffixes[4]",
			"suffixes[5]", "suffixes[6]", "suffixes[7]",
		}},
		{"negative TTL and entries", NXDomainConfig{TTL: -time.Second, MaxEntries: -1}, []string{"ttl", "max_entries"}},
		{"TTL above an hour", NXDomainConfig{Suffixes: []string{"internal."}, TTL: time.Hour + time.Second}, []string{"ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var got []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe interface{ FieldPath() string }
					if !errors.As(e, &fe) {
						t.Fatalf("%v names no field", e)
					}
					got = append(got, fe.FieldPath())
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("problems at %v, want %v (%v)", got, tt.want, err)
			}
			if _, nerr := NewNXDomain(tt.cfg, nil, nil); (nerr == nil) != (tt.want == nil) {
				t.Fatalf("NewNXDomain: %v", nerr)
			}
		})
	}
}

func TestNXDomainOff(t *testing.T) {
	n, err := NewNXDomain(NXDomainConfig{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	up := &nxUpstream{t: t}
	if n.Middleware()(up) != pipeline.Handler(up) || (NXDomainConfig{}).Enabled() || !(NXDomainConfig{Suffixes: []string{"internal."}}).Enabled() {
		t.Fatal("a cache with no suffixes is not a pass-through")
	}
}

// benchNX returns a cache over suffixes in front of a handler answering
// NXDOMAIN with a prebuilt message.
func benchNX(b testing.TB) (*NXDomain, pipeline.Handler) {
	n, err := NewNXDomain(NXDomainConfig{Suffixes: []string{"internal.", "corp.example.", "svc.cluster.local."}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	res := new(dns.Msg)
	res.Rcode = dns.RcodeNameError
	res.Ns = zone(b, nxSOA)
	next := pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return res, nil })
	return n, n.Middleware()(next)
}

func TestNXDomainPassThroughAllocs(t *testing.T) {
	_, h := benchNX(t)
	req, ctx := nxQuery("www.example.org.", dns.TypeA, ""), context.Background()
	if got := testing.AllocsPerRun(100, func() { h.ServeDNS(ctx, req) }); got != 0 {
		t.Fatalf("%v allocations per query under no suffix, want 0", got)
	}
}

func BenchmarkNXDomainPassThrough(b *testing.B) {
	_, h := benchNX(b)
	req, ctx := nxQuery("www.example.org.", dns.TypeA, ""), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.ServeDNS(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNXDomainHit(b *testing.B) {
	n, h := benchNX(b)
	n.store(nxKey{"", "bad.internal."}, negativeSOA(zone(b, nxSOA)), time.Hour)
	req, ctx := nxQuery("a.bad.internal.", dns.TypeA, ""), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if m, err := h.ServeDNS(ctx, req); err != nil || m.Rcode != dns.RcodeNameError {
			b.Fatal(m, err)
		}
	}
}
