package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// mixedPolicy returns a policy of n rules over every dimension, with
// percent, weight and whitelist splits, and queries that hit rules
// spread over it, miss every rule but the catch-all, or carry tags.
func mixedPolicy(tb testing.TB, n int) (*Policy, []*Input) {
	tb.Helper()
	var b strings.Builder
	b.WriteString("version: bench\nrules:\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, "  - name: r%d\n    match: {", i)
		switch i % 6 {
		case 0:
			fmt.Fprintf(&b, "source: [10.%d.%d.0/24], client_id: [c%d]", i/256%256, i%256, i)
		case 1:
			fmt.Fprintf(&b, "qname_prefix: [api%d.], source: [10.%d.0.0/16]", i, i%256)
		case 2:
			fmt.Fprintf(&b, "qname_suffix: [z%d.example.com], qtype: [A, AAAA]", i)
		case 3:
			fmt.Fprintf(&b, "ecs: [192.0.%d.0/24], listener: [doh]", i%256)
		case 4:
			fmt.Fprintf(&b, "tags: [t%d], qname_suffix: [z%d.example.net]", i, i)
		case 5:
			fmt.Fprintf(&b, "source: [2001:db8:%x::/48]", i)
		}
		b.WriteString("}\n")
		switch i % 4 {
		case 0:
			b.WriteString("    route: g\n")
		case 1:
			b.WriteString("    split: {percent: 10, canary: c, base: g}\n")
		case 2:
			b.WriteString("    split: {weights: {a: 1, b: 2, c: 3}}\n")
		case 3:
			fmt.Fprintf(&b, "    split: {whitelist: {client_id: [w%d], source: [10.99.0.0/16]}, canary: c, base: g}\n", i)
		}
	}
	b.WriteString("  - {name: default, route: g}\n")
	p, err := Load("bench.yaml", []byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	var qs []*Input
	for k := range 64 {
		i := k * (n - 1) / 64
		in := &Input{Source: netip.MustParseAddr("172.16.0.1"), QName: "www.example.org.", QType: 1, Listener: "udp", Tags: []string{"x", "y"}}
		switch i % 6 {
		case 0:
			in.Source, in.ClientID = netip.AddrFrom4([4]byte{10, byte(i / 256), byte(i), 7}), fmt.Sprintf("c%d", i)
		case 1:
			in.Source, in.QName = netip.AddrFrom4([4]byte{10, byte(i), 1, 1}), fmt.Sprintf("api%d.example.org.", i)
		case 2:
			in.QName = fmt.Sprintf("www.z%d.example.com.", i)
		case 3:
			in.ECS, in.Listener = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, byte(i), 0}), 24), "doh"
		case 4:
			in.Tags, in.QName = []string{"env=prod", fmt.Sprintf("t%d", i)}, fmt.Sprintf("a.z%d.example.net.", i)
		case 5:
			in.Source = netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", i))
		}
		if k%8 == 7 { // a query only the catch-all takes
			in = &Input{Source: netip.MustParseAddr("203.0.113.9"), ClientID: "nobody", QName: "miss.example.org.", QType: 16, Listener: "tcp", Tags: []string{"none"}}
		}
		qs = append(qs, in)
	}
	return p, qs
}

// BenchmarkDecide measures one decision with 10, 100 and 1,000 rules.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			p, qs := mixedPolicy(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Decide(qs[i%len(qs)])
				i++
			}
		})
	}
}

// BenchmarkCompile measures compiling 1,000 rules, once per reload.
func BenchmarkCompile(b *testing.B) {
	_, _ = mixedPolicy(b, 10)
	for b.Loop() {
		mixedPolicy(b, 1000)
	}
}

// TestDecideDoesNotAllocate checks the hot path allocates nothing, and
// that the benchmark's queries do reach the rules they aim at.
func TestDecideDoesNotAllocate(t *testing.T) {
	p, qs := mixedPolicy(t, 1000)
	hit := 0
	for _, in := range qs {
		if p.Decide(in).Rule != "default" {
			hit++
		}
	}
	if hit < len(qs)*3/4 {
		t.Fatalf("only %d of %d queries reach a rule of their own", hit, len(qs))
	}
	i := 0
	if a := testing.AllocsPerRun(1000, func() { p.Decide(qs[i%len(qs)]); i++ }); a != 0 {
		t.Errorf("Decide allocates %v times per call", a)
	}
}
