package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestTenantsWithRealClients: kdig reaches a tenant's zone through its
// client id, in the DoH path and in the DoT SNI, while a client without
// one gets the shared zone.
func TestTenantsWithRealClients(t *testing.T) {
	kdig := tool(t, "kdig")
	up := transporttest.StartFault(t, zone)
	p := startServe(t, writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: dot, address: "127.0.0.1:0", server_name: dns.test}
  - {proto: doh, address: "127.0.0.1:0"}
tls:
  self_signed: true
  hosts: [dns.test, "*.dns.test", 127.0.0.1]
upstreams:
  - {name: up, url: "udp://%s"}
zones:
  - {origin: svc.test., records: ["api 60 IN A 10.0.0.1"]}
tenants:
  - name: laptops
    client_ids: [laptop-3]
    zones: [{origin: svc.test., records: ["api 60 IN A 10.1.0.1"]}]
`, up.AddrV4())))
	dotH, dotPort := hostPort(p.addr("dot"))
	dohH, dohPort := hostPort(p.addr("doh"))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"DoH with the tenant's client id", []string{"@" + dohH, "-p", dohPort, "+https=/dns-query/laptop-3", "+tls-ca=" + p.ca}, "10.1.0.1"},
		{"DoH without a client id", []string{"@" + dohH, "-p", dohPort, "+https", "+tls-ca=" + p.ca}, "10.0.0.1"},
		{"DoT with the tenant's client id in the SNI", []string{"@" + dotH, "-p", dotPort, "+tls", "+tls-ca=" + p.ca, "+tls-sni=laptop-3.dns.test", "+tls-hostname=laptop-3.dns.test"}, "10.1.0.1"},
		{"DoT with another client id", []string{"@" + dotH, "-p", dotPort, "+tls", "+tls-ca=" + p.ca, "+tls-sni=phone-1.dns.test", "+tls-hostname=phone-1.dns.test"}, "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := dig(t, kdig, append(tt.args, "+time=3", "+retry=0", "api.svc.test", "A")...)
			if !strings.Contains(out, "NOERROR") || !strings.Contains(out, tt.want) || !strings.Contains(out, " aa") {
				t.Fatalf("want an authoritative %s:\n%s", tt.want, out)
			}
		})
	}
}

// TestStaleAnswerWithDig: with the upstream stopped, dig gets the expired
// answer with EDE 3 (Stale Answer) and a name the fallback zone holds
// with EDE 22, as a user debugging an outage would see them.
func TestStaleAnswerWithDig(t *testing.T) {
	digBin := tool(t, "dig")
	up := transporttest.StartFault(t, zone)
	p := startServe(t, writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: "udp://%s"}
cache:
  enabled: true
  max_ttl: 1s
fallback:
  - {origin: internal., records: ["* 300 IN A 127.0.0.1"]}
`, up.AddrV4())))
	h, port := hostPort(p.addr("udp"))
	ask := func(name string) string {
		return dig(t, digBin, "@"+h, "-p", port, "+time=3", "+tries=1", name, "A")
	}
	if out := ask("www.test.example"); !strings.Contains(out, "192.0.2.10") || strings.Contains(out, "EDE") {
		t.Fatalf("fresh answer:\n%s", out)
	}
	up.Stop()
	time.Sleep(1100 * time.Millisecond) // past the 1s max_ttl
	out := ask("www.test.example")
	if !strings.Contains(out, "192.0.2.10") || !strings.Contains(out, "EDE: 3 (Stale Answer)") {
		t.Fatalf("stale answer:\n%s", out)
	}
	if out := ask("db.internal"); !strings.Contains(out, "127.0.0.1") || !strings.Contains(out, "EDE: 22") {
		t.Fatalf("fallback answer:\n%s", out)
	}
}
