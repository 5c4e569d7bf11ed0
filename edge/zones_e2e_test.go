package edge_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestReloadBrokenZoneFile: a configuration reload (what SIGHUP does)
// whose zone file does not parse is refused with the file and line, and
// the running zone keeps answering; a fixed file is then taken.
func TestReloadBrokenZoneFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "corp.zone")
	if err := os.WriteFile(file, []byte("$ORIGIN corp.test.\n@ 60 IN SOA ns hostmaster 1 3600 600 86400 30\nwww 60 IN A 10.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up := transporttest.StartFault(t, upstreamZone)
	config := fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
zone_poll_interval: 1h
zones:
  - {origin: corp.test., file: %q}
`, up.AddrV4(), file)
	e := startEdge(t, config)
	www := answerCheck{name: "www.corp.test.", aa: true, rdata: "10.0.0.1"}
	checkAnswer(t, e, "start", www)

	if err := os.WriteFile(file, []byte("$ORIGIN corp.test.\n@ 60 IN SOA ns hostmaster 2 3600 600 86400 30\nwww 60 IN A 10.0.0.2\nbad 60 IN A not-an-address\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := edge.Parse("test.yaml", []byte(testListeners+config))
	if err != nil {
		t.Fatal(err)
	}
	err = e.srv.Reload(cfg)
	if err == nil || !strings.Contains(err.Error(), file+":4") {
		t.Fatalf("reload with a broken zone file: %v; want an error naming %s:4", err, file)
	}
	checkAnswer(t, e, "after the refused reload", www)

	if err := os.WriteFile(file, []byte("$ORIGIN corp.test.\n@ 60 IN SOA ns hostmaster 3 3600 600 86400 30\nwww 60 IN A 10.0.0.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, e, "after the fixed reload", answerCheck{name: "www.corp.test.", aa: true, rdata: "10.0.0.3"})
}

// TestTenantByNetwork: a tenant picked by source address sees its own
// zone in place of the shared one; other clients see the shared one.
func TestTenantByNetwork(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
zones:
  - {origin: svc.test., records: ["api 60 IN A 10.0.0.1"]}
tenants:
  - name: team-a
    networks: [127.0.0.2/32]
    zones: [{origin: svc.test., records: ["api 60 IN A 10.1.0.1"]}]
`, up.AddrV4()))
	from := func(src string) string {
		t.Helper()
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second,
			Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
		q := new(dns.Msg)
		q.SetQuestion("api.svc.test.", dns.TypeA)
		m, _, err := c.Exchange(q, e.udp.String())
		if err != nil || len(m.Answer) != 1 || !m.Authoritative {
			t.Fatalf("from %s: %v, %v", src, m, err)
		}
		return m.Answer[0].(*dns.A).A.String()
	}
	if got := from("127.0.0.2"); got != "10.1.0.1" {
		t.Errorf("tenant client got %s, want its own zone's 10.1.0.1", got)
	}
	if got := from("127.0.0.3"); got != "10.0.0.1" {
		t.Errorf("other client got %s, want the shared zone's 10.0.0.1", got)
	}
}

// TestNXDomainStorm: once the upstream has said a configured suffix does
// not exist, a storm of random names under it is answered locally.
func TestNXDomainStorm(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
health:
  probe_interval: -1s  # count client queries only: a path probe landing
                       # before the suffix probe would end the wait below early
cache:
  enabled: true
nxdomain_cache:
  suffixes: [gone.test.example.]
metrics: {address: "127.0.0.1:0"}
`, up.AddrV4()))
	up.ResetCounts()
	first := ask(t, e, "r0.gone.test.example.", dns.TypeA)
	if first.Rcode != dns.RcodeNameError {
		t.Fatalf("first query: %v", first)
	}
	// The probe of the suffix itself runs behind the first answer: wait
	// until its answer is stored (the name and the suffix), not only sent,
	// or the first names below would still go upstream.
	waitUntil(t, "the suffix probe", 5*time.Second, func() bool {
		return metric(t, e, "dnsedge_nxdomain_cache_entries") >= 2
	})
	const n = 300
	for i := 1; i <= n; i++ {
		m := ask(t, e, fmt.Sprintf("r%d.gone.test.example.", i), dns.TypeA)
		if m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 {
			t.Fatalf("name %d: %v", i, m)
		}
	}
	if got := up.Count("ipv4", "udp"); got > 3 {
		t.Fatalf("%d upstream queries for %d random names under a missing suffix, want at most 3", got, n+1)
	}
}
