package edge_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestEncryptedUpstreamPaths forwards over DoT, DoH and DoQ to an upstream
// named by host name whose bootstrap gives both families, with only the
// IPv4 address serving: every query is answered, the IPv6 path's breaker
// opens and the IPv4 path's never does. Each encrypted path has its own
// health, exactly as UDP and TCP paths do.
func TestEncryptedUpstreamPaths(t *testing.T) {
	tests := []struct {
		scheme, path string
		start        func(testing.TB, transporttest.ServerConfig) *transporttest.EncryptedServer
	}{
		{"tls", "", transporttest.StartDoT},
		{"https", "/dns-query", transporttest.StartDoH},
		{"quic", "", transporttest.StartDoQ},
	}
	for _, tt := range tests {
		t.Run(tt.scheme, func(t *testing.T) {
			ca := transporttest.NewCA(t)
			up := tt.start(t, transporttest.ServerConfig{CA: ca, Addr: netip.MustParseAddrPort("127.0.0.1:0")})
			boot := transporttest.StartBootstrap(t, bothFamilies)
			e := startEdge(t, fmt.Sprintf(`upstreams:
  - {name: up, url: "%s://dns.test:%d%s", ca_file: %q}
bootstrap: ["%s"]
health:
  failure_threshold: 3
  cooldown: 10s
  min_timeout: 100ms
  max_timeout: 400ms
  initial_timeout: 300ms
  probe_interval: 100ms
cache: {enabled: false}
`, tt.scheme, up.Addr().Port(), tt.path, ca.WritePEM(t), boot.Addr()))
			v4, v6 := pathOf(t, e, transport.IPv4), pathOf(t, e, transport.IPv6)
			if v4.ID.Proto != tt.scheme || v6.ID.Proto != tt.scheme {
				t.Fatalf("paths %v and %v, want protocol %s", v4.ID, v6.ID, tt.scheme)
			}
			_, failures := load(t, e.udp, 200)
			if len(failures) > 0 {
				t.Fatalf("%d of 200 queries failed, first: %s\nlogs:\n%s", len(failures), failures[0], tail(e.logs.String(), 20))
			}
			if s := v4.Health.Snapshot(); s.Transitions[transport.Open] != 0 {
				t.Errorf("IPv4 path breaker opened: %+v", s)
			}
			// The load may be over before the IPv6 path was ever tried
			// (the measured IPv4 path goes first): the probes then find
			// it dead.
			waitUntil(t, "IPv6 path demoted or open although nothing serves there", 10*time.Second, func() bool {
				s := v6.Health.Snapshot()
				return s.Demoted || s.State != transport.Closed
			})
			if st := up.Stats(); st.Queries < 200 {
				t.Errorf("the upstream answered %d queries, want all 200 (no cache here)", st.Queries)
			}
		})
	}
}
