package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFleet: the fleet section takes ratios and differences per
// round, holds their medians against the targets, leaves out incomplete
// rounds, and says why a scenario did not run.
func TestWriteFleet(t *testing.T) {
	t.Parallel()
	// line: scenario, round, side, then queries, CPU ns, p50, p99.
	line := func(sc string, r int, side string, q, ns int, p50, p99 string) string {
		return fmt.Sprintf("%s\t%d\t%s\tok\t%d\t%d\t%s\t%s\n", sc, r, side, q, ns, p50, p99)
	}
	var full strings.Builder
	for r := 1; r <= 3; r++ {
		// 10 µs/query static, 10.5 Consul: ratio 1.05; QPS 1000 and 950.
		full.WriteString(line("consul-udp-max", r, "static", 1000, 10_000_000, "-", "-"))
		full.WriteString(line("consul-udp-max", r, "consul", 950, 9_975_000, "-", "-"))
		// An L2 hit 0.2 ms over the L1 hit's p50, a miss 1 ms over it.
		full.WriteString(line("l2-udp-5k", r, "l1", 5000, 50_000_000, "0.100", "0.400"))
		full.WriteString(line("l2-udp-5k", r, "l2", 5000, 100_000_000, "0.300", "0.900"))
		full.WriteString(line("l2-udp-5k", r, "miss", 5000, 150_000_000, "1.100", "2.000"))
		// Hung: 2.5 ms over off at p99 (target 2 ms missed); dead: 0.05.
		full.WriteString(line("redis-hung-udp-5k", r, "off", 5000, 150_000_000, "1.000", "2.000"))
		full.WriteString(line("redis-hung-udp-5k", r, "hung", 5000, 150_000_000, "1.000", "4.500"))
		full.WriteString(line("redis-dead-udp-5k", r, "off", 5000, 150_000_000, "1.000", "2.000"))
		full.WriteString(line("redis-dead-udp-5k", r, "dead", 5000, 150_000_000, "1.000", "2.050"))
	}
	// A round with one side only is left out.
	full.WriteString(line("consul-udp-max", 4, "static", 1000, 1_000_000, "-", "-"))

	tests := []struct {
		name, tsv, counters string
		want                []string
		wantErr             string
	}{
		{"all ran", full.String(), "l2-udp-5k\tl2\tbefore\thits_total\t1000\n" +
			"l2-udp-5k\tl2\tbefore\tmisses_total\t10\n" +
			"l2-udp-5k\tl2\tbefore\tskipped_total\t0\n" +
			"l2-udp-5k\tl2\tbefore\tbreaker_state\t0\n" +
			"l2-udp-5k\tl2\tafter\thits_total\t15850\n" +
			"l2-udp-5k\tl2\tafter\tmisses_total\t110\n" +
			"l2-udp-5k\tl2\tafter\tskipped_total\t50\n" +
			"l2-udp-5k\tl2\tafter\tbreaker_state\t1\n" +
			"l2-udp-5k\tl1\tafter\thits_total\t7\n", []string{
			"| consul-udp-max | 3 | 10.00 | 10.50 | 1.050 | 1.050–1.050 | 1000 | 950 | 0.950 | yes |",
			"| L1 hit | 3 | 10.00 | 0.100 | 0.400 | - | - | - |",
			"| L2 hit | 3 | 20.00 | 0.300 | 0.900 | 0.200 | 0.200–0.200 | yes |",
			"| upstream miss, no l2 | 3 | 30.00 | 1.100 | 2.000 | 1.000 | 1.000–1.000 | - |",
			"| Redis hung (SIGSTOP) | 3 | 30.00 | 1.000 | 2.000 | 30.00 | 1.000 | 4.500 | 2.500 | 2.500–2.500 | ≤ 2.0 ms | no |",
			"| Redis dead (SIGKILL), breaker open | 3 | 30.00 | 1.000 | 2.000 | 30.00 | 1.000 | 2.050 | 0.050 | 0.050–0.050 | ≤ 0.1 ms | yes |",
			"During the rounds, the L2 hit server (`dnsedge_l2_*`): `hits_total` +14850, `misses_total` +100, " +
				"`skipped_total` +50, `breaker_state` 0 before, 1 after. Redis answered 99.0% of its local misses (14850 of 15000;",
		}, ""},
		{"few L2 hits", line("l2-udp-5k", 1, "l1", 5000, 50_000_000, "0.100", "0.400") +
			line("l2-udp-5k", 1, "l2", 5000, 100_000_000, "0.150", "0.900") +
			line("l2-udp-5k", 1, "miss", 5000, 150_000_000, "1.100", "2.000"),
			"l2-udp-5k\tl2\tbefore\thits_total\t0\n" +
				"l2-udp-5k\tl2\tbefore\tmisses_total\t0\n" +
				"l2-udp-5k\tl2\tbefore\tskipped_total\t0\n" +
				"l2-udp-5k\tl2\tafter\thits_total\t500\n" +
				"l2-udp-5k\tl2\tafter\tmisses_total\t100\n" +
				"l2-udp-5k\tl2\tafter\tskipped_total\t4400\n", []string{
				"| L2 hit | 1 | 20.00 | 0.150 | 0.900 | 0.050 | 0.050–0.050 | not measured: Redis answered 10.0% of the local misses |",
			}, ""},
		{"consul did not start", "consul-udp-max\t0\tconsul\tconsul agent did not start\t-\t-\t-\t-\n", "", []string{
			"| consul-udp-max | 0 | - | - | - | - | - | - | - | consul: consul agent did not start |",
		}, ""},
		{"a failed side", line("l2-udp-5k", 1, "l1", 5000, 50_000_000, "0.100", "0.400") +
			line("l2-udp-5k", 1, "l2", 5000, 100_000_000, "0.300", "0.900") +
			"l2-udp-5k\t1\tmiss\tdnsperf failed (exit 1)\t-\t-\t-\t-\n", "", []string{
			"| L2 hit | 0 | - | - | - | - | - | miss: dnsperf failed (exit 1) |",
		}, ""},
		{"timeout percentile", line("l2-udp-5k", 1, "l1", 5000, 50_000_000, "0.100", "0.400") +
			line("l2-udp-5k", 1, "l2", 5000, 100_000_000, "0.300", "timeout") +
			line("l2-udp-5k", 1, "miss", 5000, 150_000_000, "1.100", "2.000"), "", []string{
			"| L2 hit | 1 | 20.00 | 0.300 | timeout | 0.200 | 0.200–0.200 | yes |",
		}, ""},
		{"unknown scenario", "bogus\t1\ta\tok\t1\t1\t-\t-\n", "", nil, `unknown scenario "bogus"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "fleet.tsv"), []byte(tt.tsv), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.counters != "" {
				if err := os.WriteFile(filepath.Join(dir, "fleet-l2.tsv"), []byte(tt.counters), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var b strings.Builder
			err := writeFleet(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir,
				map[string]string{"pair_rounds": "3", "pair_seconds": "1"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("section lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

// TestWriteFleetAbsent: without fleet.tsv (BENCH_FLEET=0) there is no
// section.
func TestWriteFleetAbsent(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	if err := writeFleet(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 0 {
		t.Fatalf("section written without fleet.tsv:\n%s", b.String())
	}
}
