package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/bench/benchpolicy"
	"github.com/dnsedge/dnsedge/policy"
	"github.com/miekg/dns"
)

func TestReadLatencies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{
			name:  "no queries",
			input: "[Status] Testing complete (time limit)\n",
			want:  "- - 0 0 0",
		},
		{
			name: "answered only",
			input: "DNS Performance Testing Tool\n" +
				"> NOERROR h1.bench.test A 0.000300\n" +
				"> NOERROR h2.bench.test A 0.000100\n" +
				"> NXDOMAIN h3.bench.test A 0.000200\n" +
				"> NOERROR h4.bench.test A 0.000400\n" +
				"  Queries sent:         4\n",
			want: "0.200 0.400 4 0 0",
		},
		{
			name: "timeouts count as slowest and interrupted are left out",
			input: "> NOERROR a.bench.test A 0.000100\n" +
				"> T b.bench.test A\n" +
				"> I c.bench.test A\n",
			want: "0.100 timeout 1 1 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := readLatencies(strings.NewReader(tt.input))
			if err != nil {
				t.Fatalf("readLatencies: %v", err)
			}
			if got := s.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadLatenciesRejectsGarbage(t *testing.T) {
	t.Parallel()
	if _, err := readLatencies(strings.NewReader("> NOERROR h1.bench.test A soon\n")); err == nil {
		t.Fatal("want an error for a latency that is not a number")
	}
}

func TestNearestRank(t *testing.T) {
	t.Parallel()
	sorted := make([]float64, 100)
	for i := range sorted {
		sorted[i] = float64(i + 1)
	}
	tests := []struct {
		name string
		p    float64
		want float64
	}{
		{name: "p50", p: 50, want: 50},
		{name: "p99", p: 99, want: 99},
		{name: "p100", p: 100, want: 100},
		{name: "p0 is the minimum", p: 0, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := nearestRank(sorted, tt.p); got != tt.want {
				t.Errorf("nearestRank(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestFreePorts(t *testing.T) {
	t.Parallel()
	ports, err := freePorts(5)
	if err != nil {
		t.Fatalf("freePorts: %v", err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || p > 65535 || seen[p] {
			t.Fatalf("bad or repeated port %d in %v", p, ports)
		}
		seen[p] = true
	}
}

func TestWriteReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{
		"meta.tsv": "date\t2026-01-01\nseconds\t10\n",
		"servers.tsv": "dnsdist\t1.7.3\tok\t20480\t\n" +
			"dnsedge\t-\tnot built\t-\tsee bench/out/dnsedge-build.log\n" +
			"unbound\t1.17.1\tok\t30720\t\n",
		"hit-rss.tsv": "dnsdist\t10240\nunbound\t15360\n",
		"results.tsv": "hit-udp-max\tdnsdist\tok\t100000\t1000000\t1000000\t0.00\t5.0\t-\t-\t50\t100\tother processes used 40% of core 0\n" +
			"hit-udp-max\tdnsedge\tnot built\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n" +
			"miss-udp-5k\tnamed-direct\tok\t5000\t50000\t50000\t0.00\t20.0\t0.050\t0.200\t10\t20\t\n" +
			"miss-udp-5k\tdnsdist\tok\t5000\t50000\t50000\t0.00\t10.0\t0.150\t0.900\t5\t20\t\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "BENCHMARKS.md")
	if err := writeReport(dir, out); err != nil {
		t.Fatalf("writeReport: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| dnsdist | 100000 | 0.00% | 5.0 | 1.00 | 1.00 | 50% | 100% |",
		"| dnsedge | - | - | - | - | - | - | - | not built |",
		"| dnsdist | 5000 | 0.00% | 0.150 | 0.900 | +0.100 | 10.0 | 1.00 |",
		"| dnsdist | 1.7.3 | ok | 10.0 | 1.00 | 20.0 | 1.00 |  |",
		"| dnsedge | - | not built | - | - | - | - | see bench/out/dnsedge-build.log |",
		"| unbound | 1.17.1 | ok | 15.0 | 1.50 | 30.0 | 1.50 |  |",
		"in 1 of 3 runs other processes took more than 10% of core 0",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}
}

// TestPolicyLoads: the policy row's document compiles, with no rule
// shadowed, and sends loopback queries through the last rule's split.
func TestPolicyLoads(t *testing.T) {
	var b strings.Builder
	if err := benchpolicy.Write(&b, 1000); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load("bench-policy.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 1000 {
		t.Fatalf("%d rules, want 1000", p.Len())
	}
	if err := p.Shadowed(); err != nil {
		t.Fatalf("shadowed rules: %v", err)
	}
	d := p.Decide(&policy.Input{Source: netip.MustParseAddr("127.0.0.1"), QName: "h1.bench.example.", QType: dns.TypeA, Listener: "udp"})
	if d.Rule != "loopback-half" || (d.Group != "default" && d.Group != "canary") {
		t.Fatalf("a benchmark query got %+v, want the loopback split", d)
	}
}

// TestPairTables: a pair table takes the ratio per round (only rounds
// with both sides), reports the median and the middle half of the ratios
// against the target, and names a failed round.
func TestPairTables(t *testing.T) {
	dir := t.TempDir()
	row := func(sc, round, side, status, q, ns string) string {
		return strings.Join([]string{sc, round, side, status, q, ns}, "\t") + "\n"
	}
	// Round ratios of hit-udp-max: 1.02, 1.00, 1.10, 0.98 (round 5 has one
	// side only and is left out); the machine slows down in round 3 for
	// both sides, which a per-round ratio cancels.
	tsv := row("hit-udp-max", "1", "off", "ok", "1000", "10000000") + row("hit-udp-max", "1", "on", "ok", "1000", "10200000") +
		row("hit-udp-max", "2", "on", "ok", "2000", "20000000") + row("hit-udp-max", "2", "off", "ok", "2000", "20000000") +
		row("hit-udp-max", "3", "off", "ok", "1000", "30000000") + row("hit-udp-max", "3", "on", "ok", "1000", "33000000") +
		row("hit-udp-max", "4", "on", "ok", "1000", "9800000") + row("hit-udp-max", "4", "off", "ok", "1000", "10000000") +
		row("hit-udp-max", "5", "off", "ok", "1000", "10000000") + row("hit-udp-max", "5", "on", "server exited", "-", "-") +
		row("hit-tcp-max", "1", "off", "ok", "1000", "5000000") + row("hit-tcp-max", "1", "on", "dnsperf failed (exit 1)", "-", "-") +
		row("miss-udp-max", "1", "off", "ok", "1000", "10000000") + row("miss-udp-max", "1", "on", "ok", "1000", "12000000")
	if err := os.WriteFile(filepath.Join(dir, "policy.tsv"), []byte(tsv), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := writePairs(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir, map[string]string{"pair_rounds": "5", "pair_seconds": "2"}, policyPairs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"## Policy cost",
		"runs 5 rounds of 2 s on each",
		"| hit-udp-max | 4 | 10.00 | 10.10 | 1.010 | 0.995–1.040 | yes (a round failed: on: server exited) |",
		"| hit-tcp-max | 0 | - | - | - | - | on: dnsperf failed (exit 1) |",
		"| miss-udp-max | 1 | 10.00 | 12.00 | 1.200 | 1.200–1.200 | no |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	canary := row("hit-udp-5k", "1", "off", "ok", "1000", "20000000") + row("hit-udp-5k", "1", "on", "ok", "1000", "20600000")
	if err := os.WriteFile(filepath.Join(dir, "canary.tsv"), []byte(canary), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := writePairs(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir, nil, canaryPairs); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "## Canary cost") || !strings.Contains(out, "| hit-udp-5k | 1 | 20.00 | 20.60 | 1.030 | 1.030–1.030 | yes |") {
		t.Errorf("canary table:\n%s", out)
	}
	base := row("miss-udp-max", "1", "base", "ok", "1000", "20000000") + row("miss-udp-max", "1", "head", "ok", "1000", "20200000")
	if err := os.WriteFile(filepath.Join(dir, "base.tsv"), []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base-ref.txt"), []byte("v1 (abc1234)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := writePairs(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir, nil, basePairs); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "The earlier commit: v1 (abc1234).") || !strings.Contains(out, "| miss-udp-max | 1 | 20.00 | 20.20 | 1.010 | 1.010–1.010 | yes |") {
		t.Errorf("base table:\n%s", out)
	}
	if err := writePairs(func(string, ...any) { t.Error("wrote the validation table without its file") }, dir, nil, dnssecPairs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dnssec-pairs.tsv"), []byte(row("dnssec-hit-udp-max", "1", "bogus", "ok", "1", "1")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writePairs(func(string, ...any) {}, dir, nil, dnssecPairs); err == nil || !strings.Contains(err.Error(), `unknown side "bogus"`) {
		t.Errorf("a file with an unknown side: err %v", err)
	}
}

// TestCarryCost: the forward option table reads go test -bench output
// run by run (with or without "round" lines), takes each run's difference
// from its own plain case, and judges the median.
func TestCarryCost(t *testing.T) {
	for _, tt := range []struct{ name, out string }{
		{"rounds", `round 1
goos: linux
BenchmarkForwardCarry/plain         	  300000	      4000 ns/op	    1800 B/op	      20 allocs/op
BenchmarkForwardCarry/ecs+tags      	  300000	      4300 ns/op	    2152 B/op	      21 allocs/op
PASS
round 2
BenchmarkForwardCarry/plain         	  300000	      3500 ns/op	    1800 B/op	      20 allocs/op
BenchmarkForwardCarry/ecs+tags      	  300000	      4200 ns/op	    2152 B/op	      21 allocs/op
round 3
BenchmarkForwardCarry/plain-2       	  300000	      3700 ns/op	    1800 B/op	      20 allocs/op
BenchmarkForwardCarry/ecs+tags-2    	  300000	      4100 ns/op	    2152 B/op	      21 allocs/op
`},
		{"repeats", `BenchmarkForwardCarry/plain         	  300000	      4000 ns/op	    1800 B/op	      20 allocs/op
BenchmarkForwardCarry/ecs+tags      	  300000	      4300 ns/op	    2152 B/op	      21 allocs/op
BenchmarkForwardCarry/plain         	  300000	      3500 ns/op	    1800 B/op	      20 allocs/op
BenchmarkForwardCarry/ecs+tags      	  300000	      4200 ns/op	    2152 B/op	      21 allocs/op
BenchmarkForwardCarry/plain-2       	  300000	      3700 ns/op	    1800 B/op	      20 allocs/op
BenchmarkForwardCarry/ecs+tags-2    	  300000	      4100 ns/op	    2152 B/op	      21 allocs/op
`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "carry.txt"), []byte(tt.out), 0o644); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := writeCarryCost(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir); err != nil {
				t.Fatal(err)
			}
			// Differences 300, 700, 400: median 400, met.
			for _, want := range []string{"| plain | 3 | 3700 | 20 | +0 ns |", "| ecs+tags | 3 | 4200 | 21 | +400 ns | +350 – +550 ns | - | - | yes |"} {
				if !strings.Contains(b.String(), want) {
					t.Errorf("missing %q in\n%s", want, b.String())
				}
			}
			// Instruction counts, when there are some, go beside.
			if err := os.WriteFile(filepath.Join(dir, "carry-instr.tsv"), []byte("plain\t30000\necs+tags\t30900\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			b.Reset()
			if err := writeCarryCost(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir); err != nil {
				t.Fatal(err)
			}
			if want := "| +350 – +550 ns | 30900 | +900 | yes |"; !strings.Contains(b.String(), want) {
				t.Errorf("missing %q in\n%s", want, b.String())
			}
		})
	}
}

// TestHistogramCost: the histogram table takes each run's on/off ratio,
// reads cpu-ns/op before ns/op, and judges the median against 1.02.
func TestHistogramCost(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	for i, on := range []struct{ hit, miss int }{{1010, 1500}, {1020, 1600}, {1030, 1700}} {
		fmt.Fprintf(&out, "round %d\n", i+1)
		fmt.Fprintf(&out, "BenchmarkHistograms/hit/histograms=false-2 100 9999 ns/op 1000 cpu-ns/op 0 B/op 0 allocs/op\n")
		fmt.Fprintf(&out, "BenchmarkHistograms/hit/histograms=true-2 100 9999 ns/op %d cpu-ns/op 0 B/op 0 allocs/op\n", on.hit)
		fmt.Fprintf(&out, "BenchmarkHistograms/miss/histograms=false-2 100 9999 ns/op 1500 cpu-ns/op 0 B/op 0 allocs/op\n")
		fmt.Fprintf(&out, "BenchmarkHistograms/miss/histograms=true-2 100 9999 ns/op %d cpu-ns/op 0 B/op 0 allocs/op\n", on.miss)
	}
	if err := os.WriteFile(filepath.Join(dir, "histograms.txt"), []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := writeHistogramCost(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| hit | 3 | 1000 | 1020 | 1.020 | 1.015–1.025 | - | - | - | yes |", "| miss | 3 | 1500 | 1600 | 1.067 | 1.033–1.100 | - | - | - | no |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in\n%s", want, b.String())
		}
	}
	// With instruction counts, they decide.
	instr := "hit/histograms=false\t8000\nhit/histograms=true\t8240\nmiss/histograms=false\t18000\nmiss/histograms=true\t18180\n"
	if err := os.WriteFile(filepath.Join(dir, "histograms-instr.tsv"), []byte(instr), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := writeHistogramCost(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| 1.015–1.025 | 8000 | 8240 | 1.030 | no |", "| 1.033–1.100 | 18000 | 18180 | 1.010 | yes |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in\n%s", want, b.String())
		}
	}
}
