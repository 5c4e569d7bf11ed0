package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestPolicyReloadUnderDnsperf reloads the policy 20 times, alternating
// two versions that route the same names to different groups, while
// dnsperf sends a bounded stream of queries: none is lost or fails.
func TestPolicyReloadUnderDnsperf(t *testing.T) {
	dnsperf := tool(t, "dnsperf")
	var zone strings.Builder
	zone.WriteString("$ORIGIN test.example.\n@ 60 IN SOA ns hostmaster 1 3600 600 86400 30\n")
	var queries strings.Builder
	for i := range 200 {
		fmt.Fprintf(&zone, "h%d 60 IN A 192.0.2.%d\n", i, i%250+1)
		fmt.Fprintf(&queries, "h%d.test.example A\napi-v2-h%d.test.example A\n", i, i)
	}
	for i := range 200 {
		fmt.Fprintf(&zone, "api-v2-h%d 60 IN A 198.51.100.%d\n", i, i%250+1)
	}
	a := transporttest.StartFault(t, zone.String())
	b := transporttest.StartFault(t, zone.String())
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	writePolicy := func(v int) {
		t.Helper()
		route := [2]string{"default", "canary"}[v%2]
		text := fmt.Sprintf(`version: "v%d"
rules:
  - name: api
    match: {qname_prefix: ["api-v2-"]}
    route: %s
  - name: some-clients
    match: {source: [127.0.0.0/8]}
    split: {percent: 50, canary: canary, base: default}
`, v, route)
		tmp := policyFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, policyFile); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy(0)
	path := writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
upstreams:
  - {name: a, url: "udp://%s"}
  - {name: b, url: "udp://%s"}
groups:
  - {name: default, upstreams: [a]}
  - {name: canary, upstreams: [b]}
policy_file: %s
cache: {enabled: false}
log: {level: info}
`, a.AddrV4(), b.AddrV4(), policyFile))
	p := startServe(t, path)
	qfile := writeFile(t, "queries.txt", queries.String())
	host, port := hostPort(p.addr("udp"))
	// 6,000 queries at most, at 2,000 per second, for at most 15 s.
	perf := exec.Command(dnsperf, "-s", host, "-p", port, "-d", qfile, "-l", "15", "-n", "15", "-Q", "2000", "-t", "3")
	var out strings.Builder
	perf.Stdout, perf.Stderr = &out, &out
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	reloads := func() int { return strings.Count(p.stderr.String(), "configuration reloaded") }
	for v := 1; v <= 20; v++ {
		writePolicy(v)
		p.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, fmt.Sprintf("reload %d", v), func() bool { return reloads() >= v })
		time.Sleep(50 * time.Millisecond) // let queries meet each version
	}
	if err := perf.Wait(); err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, out.String())
	}
	if strings.Contains(p.stderr.String(), "reload failed") {
		t.Fatalf("a reload failed:\n%s", p.stderr.String())
	}
	sent := regexp.MustCompile(`Queries sent:\s+(\d+)`).FindStringSubmatch(out.String())
	lost := regexp.MustCompile(`Queries lost:\s+(\d+)`).FindStringSubmatch(out.String())
	noerror := regexp.MustCompile(`NOERROR (\d+)`).FindStringSubmatch(out.String())
	if sent == nil || lost == nil || noerror == nil {
		t.Fatalf("dnsperf output not understood:\n%s", out.String())
	}
	if lost[1] != "0" || noerror[1] != sent[1] {
		t.Fatalf("during 20 policy reloads: %s sent, %s lost, %s NOERROR\n%s", sent[1], lost[1], noerror[1], out.String())
	}
	t.Logf("%s queries, all answered NOERROR, during 20 policy reloads", sent[1])
}
