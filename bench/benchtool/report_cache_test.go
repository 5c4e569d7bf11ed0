package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReportCacheMem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{
		"meta.tsv": "date\t2026-01-01\ncache_names\t1000000\ncache_last\t999999\ncache_entries\t1100000\n" +
			"cache_seconds\t70\ncache_args\t-T 1 -c 4 -q 200 -t 2 -Q 40000\ncache_phase_seconds\t301\n",
		"servers.tsv": "dnsdist\t1.7.3\tok\t20480\t\n",
		"results.tsv": "",
		"cachemem.tsv": "dnsdist\tok\t1000000\t999971\t999586\tserver\t25.006\t39989.1\t47208\t47208\t267756\t267756\t226\t\n" +
			"dnsedge\tok\t918590\t918590\t918590\tnoerror\t60.008\t15307.7\t19704\t19704\t615236\t615236\t664\tstopped by the 70 s bound\n" +
			"coredns\tbuild of v1.15.0 failed\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n",
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
		"## Cache memory: RSS per cached entry",
		"a cache sized for 1,100,000 entries",
		"at most 40,000 qps",
		"The phase took 301 s.",
		"| dnsdist | 1000000 | 999971 | 999586 | 25.0 | 39989 | 46.1 | 46.1 | 261.5 | 261.5 | 226 |  |",
		"| dnsedge | 918590 | 918590 | 918590 | 60.0 | 15308 | 19.2 | 19.2 | 600.8 | 600.8 | 664 | stopped by the 70 s bound |",
		"| coredns | - | - | - | - | - | - | - | - | - | - | build of v1.15.0 failed |",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}
	// dnsedge comes before dnsdist, as in every table.
	if i, j := strings.Index(string(b), "| dnsedge | 918590"), strings.Index(string(b), "| dnsdist | 1000000"); i < 0 || j < 0 || i > j {
		t.Errorf("rows out of order:\n%s", b)
	}
}

func TestCommas(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"0": "0", "999": "999", "1000": "1,000", "1100000": "1,100,000", "-": "-", "": ""} {
		if got := commas(in); got != want {
			t.Errorf("commas(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIdleRSS: the idle memory table lists each server's two readings in
// MiB, in the report's server order, and is left out without its file.
func TestIdleRSS(t *testing.T) {
	dir := t.TempDir()
	if err := writeIdleRSS(func(string, ...any) { t.Error("wrote a table without idle-rss.tsv") }, dir); err != nil {
		t.Fatal(err)
	}
	tsv := "dnsdist\t40960\t43008\ndnsedge\t20480\t-\n"
	if err := os.WriteFile(filepath.Join(dir, "idle-rss.tsv"), []byte(tsv), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := writeIdleRSS(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir); err != nil {
		t.Fatal(err)
	}
	want := "| dnsedge | 20.0 | - |\n| dnsdist | 40.0 | 42.0 |\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("missing %q in\n%s", want, b.String())
	}
}
