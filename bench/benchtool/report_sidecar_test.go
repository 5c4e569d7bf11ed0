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

// TestWriteSidecarPaired: a CPU row with paired rounds is judged by their
// median ratio, dnsedge over dnsdist, and the count says how many rows the
// single measurements alone meet.
func TestWriteSidecarPaired(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Three rounds of hit-udp-5k: dnsedge at 0.9, 0.95 and 1.2 times
	// dnsdist's CPU per query (median 0.95); miss-udp-5k's dnsedge side
	// failed.
	tsv := "hit-udp-5k\t1\tdnsdist\tok\t10000\t200000000\n" +
		"hit-udp-5k\t1\tdnsedge\tok\t10000\t180000000\n" +
		"hit-udp-5k\t2\tdnsedge\tok\t10000\t190000000\n" +
		"hit-udp-5k\t2\tdnsdist\tok\t10000\t200000000\n" +
		"hit-udp-5k\t3\tdnsdist\tok\t10000\t200000000\n" +
		"hit-udp-5k\t3\tdnsedge\tok\t10000\t240000000\n" +
		"miss-udp-5k\t1\tdnsedge\tserver exited\t-\t-\n"
	if err := os.WriteFile(filepath.Join(dir, "sidecar-pairs.tsv"), []byte(tsv), 0o644); err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]result{
		"hit-udp-5k": {
			{scenario: "hit-udp-5k", server: "dnsedge", status: "ok", cpu: "37.4"},
			{scenario: "hit-udp-5k", server: "dnsdist", status: "ok", cpu: "28.4"},
		},
		"miss-udp-5k": {
			{scenario: "miss-udp-5k", server: "dnsedge", status: "ok", cpu: "40.0", p99: "0.200"},
			{scenario: "miss-udp-5k", server: "dnsdist", status: "ok", cpu: "46.8", p99: "0.293"},
		},
	}
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	if err := writeSidecar(w, byKey, dir, map[string]string{}, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| CPU µs/query, hit-udp-5k | 37.4 | 28.4 | 1.32 | 0.950 (0.925–1.075, 3 rounds) | met |",
		"| CPU µs/query, miss-udp-5k | 40.0 | 46.8 | 0.85 | failed (dnsedge: server exited) | met |",
		"| p99 ms, miss-udp-5k | 0.200 | 0.293 | 0.68 | - | met |",
		"Met: 3 of 3 (2 of 3 by the single measurements alone).",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}
