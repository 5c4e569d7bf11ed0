package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestWriteDoHURIs(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := writeDoHURIs(strings.NewReader("h1.bench.test A\n\nh2.bench.test AAAA\n"), &out, "https://127.0.0.1:8443/dns-query"); err != nil {
		t.Fatalf("writeDoHURIs: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d URIs, want 2:\n%s", len(lines), out.String())
	}
	tests := []struct {
		name  string
		line  string
		qname string
		qtype uint16
	}{
		{name: "A", line: lines[0], qname: "h1.bench.test.", qtype: dns.TypeA},
		{name: "AAAA", line: lines[1], qname: "h2.bench.test.", qtype: dns.TypeAAAA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b64, ok := strings.CutPrefix(tt.line, "https://127.0.0.1:8443/dns-query?dns=")
			if !ok {
				t.Fatalf("URI %q lacks the base", tt.line)
			}
			b, err := base64.RawURLEncoding.DecodeString(b64)
			if err != nil {
				t.Fatalf("not unpadded base64url: %v", err)
			}
			var m dns.Msg
			if err := m.Unpack(b); err != nil {
				t.Fatalf("unpack: %v", err)
			}
			if m.Id != 0 || !m.RecursionDesired || len(m.Question) != 1 || m.Question[0].Name != tt.qname || m.Question[0].Qtype != tt.qtype {
				t.Errorf("got %v", m.String())
			}
		})
	}
}

func TestWriteDoHURIsRejectsUnknownType(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := writeDoHURIs(strings.NewReader("h1.bench.test NOPE\n"), &out, "https://x/dns-query"); err == nil {
		t.Fatal("want an error for an unknown type")
	}
}

func TestReadH2loadLog(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, input, want string
	}{
		{name: "empty", input: "", want: "- - 0 0 0"},
		{name: "answered", input: "1700000000000000\t200\t300\n1700000000000100\t200\t100\n1700000000000200\t200\t200\n", want: "0.200 0.300 3 0 0"},
		{name: "errors count as timeouts", input: "1\t200\t100\n2\t-1\t5\n", want: "0.100 timeout 1 1 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := readH2loadLog(strings.NewReader(tt.input))
			if err != nil {
				t.Fatalf("readH2loadLog: %v", err)
			}
			if got := s.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadH2loadLogRejectsGarbage(t *testing.T) {
	t.Parallel()
	if _, err := readH2loadLog(strings.NewReader("1\tOK\t100\n")); err == nil {
		t.Fatal("want an error for a status that is not a number")
	}
}

func TestWriteReportEncrypted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ok := func(sc, server, cpu, p99 string) string {
		return sc + "\t" + server + "\tok\t5000\t50000\t50000\t0.00\t" + cpu + "\t0.100\t" + p99 + "\t50\t60\t\n"
	}
	files := map[string]string{
		"meta.tsv":    "date\t2026-01-01\nencrypted\t1\n",
		"servers.tsv": "dnsdist\t1.7.3\tok\t20480\t\ndnsedge\t0.1\tok\t40960\t\n",
		"results.tsv": ok("hit-dot-max", "dnsedge", "10.0", "-") + ok("hit-dot-max", "dnsdist", "20.0", "-") +
			ok("hit-dot-5k", "dnsedge", "30.0", "0.500") + ok("hit-dot-5k", "dnsdist", "30.0", "0.600") +
			ok("miss-dot-5k", "dnsedge", "30.0", "1.000") + ok("miss-dot-5k", "dnsdist", "60.0", "2.000") +
			ok("hit-doh-max", "dnsedge", "40.0", "-") + ok("hit-doh-max", "dnsdist", "20.0", "-") +
			ok("hit-doq-max", "dnsedge", "25.0", "-") +
			"hit-doq-max\tdnsdist\tnot supported by dnsdist 1.7.3\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n",
		"idle.tsv": "dnsedge\t1000\t1000\t20480\t40960\t20.5\t\ndnsdist\t1000\t1000\t40000\t60000\t20.0\t\n",
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
		"| dot | dnsperf | dnsedge | 5000 | 0.00% | 10.0 | 1.00 | 0.50 | 50% | 60% |",
		"| doh | h2load | dnsedge | 5000 | 0.00% | 40.0 | 1.00 | 2.00 | 50% | 60% |",
		"| doq | quicload | dnsedge | 5000 | 0.00% | 25.0 | - | - | 50% | 60% |",
		"| doq | quicload | dnsdist | - | - | - | - | - | - | - | not supported by dnsdist 1.7.3 |",
		"| dnsedge | 1000 of 1000 | 20.0 | 40.0 | 20.5 |  |",
		"| dot | 0.50 | 1.00 | 0.50 | 0.500 / 0.600 | 1.000 / 2.000 | met |",
		"| doh | 2.00 | - | - | - / - | - / - | not met |",
		"dnsedge 20.5 KiB per connection against a target of under 30 KiB: met.",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}
}
