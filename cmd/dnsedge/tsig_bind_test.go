package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

const bindZone = `$TTL 300
@    IN SOA ns.bind.test. hostmaster.bind.test. 1 3600 600 86400 60
@    IN NS  ns.bind.test.
ns   IN A   127.0.0.1
www  IN A   192.0.2.80
`

// namedKeyed runs BIND serving bind.test to queries signed with one of
// keys (name → base64 secret, hmac-sha256) only.
func namedKeyed(t *testing.T, keys map[string]string) string {
	t.Helper()
	var top, names []string
	for name, secret := range keys {
		top = append(top, fmt.Sprintf("key %q { algorithm hmac-sha256; secret %q; };", name, secret))
		names = append(names, fmt.Sprintf("key %q;", name))
	}
	return startNamedWith(t, "bind.test", bindZone, namedOpts{
		top:   strings.Join(top, "\n"),
		zone:  "allow-query { " + strings.Join(names, " ") + " };",
		keyed: true,
	})
}

// TestTSIGSigningToBind: an upstream with tsig_key gets every query
// signed, over UDP and TCP, so that a BIND that serves signed queries
// only answers; with the wrong secret BIND refuses and dnsedge, which
// cannot verify the reply, answers SERVFAIL.
func TestTSIGSigningToBind(t *testing.T) {
	kdig := tool(t, "kdig")
	addr := namedKeyed(t, map[string]string{"up-key.": tsigSecret})
	for _, tt := range []struct {
		name, secret, want string
	}{
		{"right key", tsigSecret, "192.0.2.80"},
		{"wrong secret", tsigOther, "SERVFAIL"},
	} {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(tt.name+" "+proto, func(t *testing.T) {
				p := startServe(t, writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
upstreams:
  - {name: bind, url: "%s://%s", tsig_key: up-key.}
tsig:
  keys:
    - {name: up-key., secret: "%s"}
cache:
  enabled: false
log: {level: debug, queries: true}  # a failure shows the probes and the upstream's error
`, proto, addr, tt.secret)))
				h, port := hostPort(p.addr("udp"))
				out := dig(t, kdig, "@"+h, "-p", port, "+time=5", "+retry=0", "www.bind.test", "A")
				if !strings.Contains(out, tt.want) {
					t.Fatalf("want %s:\n%s\ndnsedge logged:\n%s", tt.want, out, p.stderr.String())
				}
			})
		}
	}
}

// TestTSIGRelayToBind: a query signed with a key dnsedge does not hold is
// forwarded unchanged to BIND, which holds it; BIND's signed answer is
// relayed so that dig verifies it, and it is never cached: asked twice,
// both answers come from the upstream.
func TestTSIGRelayToBind(t *testing.T) {
	digBin := tool(t, "dig")
	addr := namedKeyed(t, map[string]string{"client-key.": tsigOther})
	p := startServe(t, writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
upstreams:
  - {name: bind, url: "udp://%s"}
tsig:
  keys:
    - {name: edge-key., secret: "%s"}
log:
  level: info
  queries: true
`, addr, tsigSecret)))
	h, port := hostPort(p.addr("udp"))
	for i := range 2 {
		out := dig(t, digBin, "@"+h, "-p", port, "+time=5", "+retry=0", "-y", "hmac-sha256:client-key.:"+tsigOther, "www.bind.test", "A")
		if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "192.0.2.80") ||
			!strings.Contains(out, "client-key.\t\t0\tANY\tTSIG") || strings.Contains(out, "Couldn't verify") || strings.Contains(out, "failure") {
			t.Fatalf("query %d: want BIND's answer, signed, verified by dig:\n%s", i+1, out)
		}
	}
	var sources []string
	waitFor(t, "two query log lines", func() bool {
		sources = sources[:0]
		sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
		for sc.Scan() {
			var e struct{ Msg, Name, Source, TSIG string }
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == "query" && e.Name == "www.bind.test." {
				sources = append(sources, e.Source+"/"+e.TSIG)
			}
		}
		return len(sources) >= 2
	})
	for _, s := range sources {
		if s != "upstream/badkey" {
			t.Errorf("query log sources %v, want every answer from the upstream (never cached), tsig badkey", sources)
		}
	}
}
