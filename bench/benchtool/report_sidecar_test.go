package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteSidecar(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cm := "dnsedge\tok\t1000000\t1000000\t1000000\tserver\t30\t33000\t30000\t30000\t400000\t400000\t380\t\n"
	if err := os.WriteFile(filepath.Join(dir, "cachemem.tsv"), []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]result{
		"hit-udp-max": {
			{scenario: "hit-udp-max", server: "dnsedge", status: "ok", cpu: "6.0"},
			{scenario: "hit-udp-max", server: "dnsdist", status: "ok", cpu: "6.5"},
		},
		"miss-udp-5k": {
			{scenario: "miss-udp-5k", server: "dnsedge", status: "ok", cpu: "84.0", p99: "1.790"},
			{scenario: "miss-udp-5k", server: "dnsdist", status: "ok", cpu: "40.6", p99: "0.221"},
		},
		"hit-dot-5k": {
			{scenario: "hit-dot-5k", server: "dnsedge", status: "exited during the runs"},
			{scenario: "hit-dot-5k", server: "dnsdist", status: "ok", cpu: "42.2"},
		},
	}
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	writeSidecar(w, byKey, dir, map[string]string{"dnsedge": "153600", "dnsdist": "102400"},
		map[string]string{"dnsedge": "61440", "dnsdist": "40960"})
	for _, want := range []string{
		"| CPU µs/query, hit-udp-max | 6.0 | 6.5 | 0.92 | met |",
		"| CPU µs/query, miss-udp-5k | 84.0 | 40.6 | 2.07 | not met |",
		"| CPU µs/query, hit-dot-5k | exited during the runs | 42.2 | - | not met |",
		"| p99 ms, miss-udp-5k | 1.790 | 0.221 | 8.10 | not met |",
		"| peak RSS MiB after the hit runs | 60.0 | 40.0 | 1.50 | met |",
		"| peak RSS MiB after all runs | 150.0 | 100.0 | 1.50 | met |",
		"| RSS bytes per cached entry at 1 M | 380 | ≤ 400 | - | met |",
		"Met: 4 of 7.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "hit-tcp-max") {
		t.Errorf("a scenario neither server ran has a row:\n%s", b.String())
	}
}
