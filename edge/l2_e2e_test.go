package edge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/cache/l2/redistest"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// metric returns the value of the sample named by name and labels
// (`name` or `name{k="v"}`) on e's metrics endpoint, 0 when absent.
func metric(t *testing.T, e *testEdge, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// l2Query asks e name A from src (127.0.0.2 is tenant team-a, 127.0.0.3
// team-b), with DO and CD as given, and returns the answer and how long
// it took. It fails the test on a timeout or a SERVFAIL.
func l2Query(t *testing.T, e *testEdge, src, name string, do, cd bool) (*dns.Msg, time.Duration) {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	q.SetEdns0(1232, do)
	q.CheckingDisabled = cd
	start := time.Now()
	m, _, err := c.Exchange(q, e.udp.String())
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%s from %s: %v", name, src, err)
	}
	if m.Rcode == dns.RcodeServerFailure {
		t.Fatalf("%s from %s: SERVFAIL", name, src)
	}
	return m, took
}

// TestL2SharedCache runs two dnsedge instances on one real redis-server:
// an answer one resolved is the other's L2 hit, tenants and DO/CD never
// share answers, a stopped Redis costs no query more than the budget, a
// killed one opens the breaker, a restarted one is used again, and a
// value tampered with in Redis is rejected and counted.
func TestL2SharedCache(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "fleet.key")
	pwFile := filepath.Join(dir, "redis.password")
	if err := os.WriteFile(keyFile, []byte("fleet-key-for-the-l2-test-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte(redistest.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A budget far above Redis's loopback round trip, so that an answer
	// in Redis is found within it even on a loaded machine under the race
	// detector (B's upstream counter must not move), and far below the
	// 4s after which a lookup gives up (a query that waited for a stopped
	// Redis would show). The budget's own logic, the adaptive lowering
	// included, is tested on a fake clock in edge/cache and
	// edge/cache/l2.
	const budget = 200 * time.Millisecond
	config := func(up *transporttest.Server) string {
		return fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
health:
  probe_interval: -1s   # count client queries only
metrics: {address: "127.0.0.1:0"}
tenants:
  - {name: team-a, networks: [127.0.0.2/32], zones: [{origin: a.internal., records: ["x 60 IN A 10.0.0.1"]}]}
  - {name: team-b, networks: [127.0.0.3/32], zones: [{origin: b.internal., records: ["x 60 IN A 10.0.0.2"]}]}
cache:
  l2:
    redis: {address: %q, username: %s, password_file: %q}
    key_file: %q
    budget: %[6]s
    min_budget: %[6]s
    timeout: 4s         # far above any query's wait: a query that waited for Redis would show
    breaker: {failures: 3, cooldown: 100ms, max_cooldown: 200ms}
`, up.AddrV4(), rs.Addr(), redistest.User, pwFile, keyFile, budget)
	}
	upA := transporttest.StartFault(t, upstreamZone)
	upB := transporttest.StartFault(t, upstreamZone)
	a := startEdge(t, config(upA))
	b := startEdge(t, config(upB))
	upstreamB := func() int64 { return upB.Count("ipv4", "udp") }
	const teamA, teamB = "127.0.0.2", "127.0.0.3"

	// written waits until A has written n answers to Redis.
	written := func(t *testing.T, n float64) {
		t.Helper()
		waitUntil(t, "A's writes to Redis", 5*time.Second, func() bool { return metric(t, a, "dnsedge_l2_writes_total") >= n })
	}
	writes := 0.0
	// shared resolves name on A (as src, with do and cd), waits for the
	// write, and reports whether B then answered it from L2: the same
	// records and no query to B's upstream.
	shared := func(t *testing.T, srcA, srcB, name string, doA, cdA, doB, cdB bool) bool {
		t.Helper()
		ma, _ := l2Query(t, a, srcA, name, doA, cdA)
		writes++
		written(t, writes)
		before, hits := upstreamB(), metric(t, b, "dnsedge_l2_hits_total")
		mb, _ := l2Query(t, b, srcB, name, doB, cdB)
		hit := upstreamB() == before
		if hit != (metric(t, b, "dnsedge_l2_hits_total") == hits+1) {
			t.Fatalf("%s: upstream count and dnsedge_l2_hits_total disagree", name)
		}
		if hit && (len(mb.Answer) != len(ma.Answer) || mb.Answer[0].String() != ma.Answer[0].String() && mb.Answer[0].Header().Ttl > ma.Answer[0].Header().Ttl) {
			t.Fatalf("%s: B's L2 answer %v differs from A's %v", name, mb.Answer, ma.Answer)
		}
		return hit
	}

	t.Run("L2 hit", func(t *testing.T) {
		if !shared(t, teamA, teamA, "h1.test.example.", false, false, false, false) {
			t.Fatal("a name A resolved was not an L2 hit on B")
		}
		// B's own cache now has it: no lookup, no upstream.
		lookups := metric(t, b, "dnsedge_l2_lookups_total")
		l2Query(t, b, teamA, "h1.test.example.", false, false)
		if metric(t, b, "dnsedge_l2_lookups_total") != lookups {
			t.Error("an L1 hit on B asked Redis")
		}
	})
	t.Run("tenants never cross", func(t *testing.T) {
		if shared(t, teamA, teamB, "h2.test.example.", false, false, false, false) {
			t.Error("team-b got team-a's answer from L2")
		}
		if shared(t, teamB, "127.0.0.1", "h3.test.example.", false, false, false, false) {
			t.Error("a client of no tenant got team-b's answer from L2")
		}
	})
	t.Run("DO and CD never cross", func(t *testing.T) {
		for i, tc := range []struct{ doA, cdA, doB, cdB, hit bool }{
			{true, false, false, false, false},
			{false, false, true, false, false},
			{false, true, false, false, false},
			{false, false, false, true, false},
			{true, true, true, true, true},
		} {
			name := fmt.Sprintf("h%d.test.example.", 4+i)
			if got := shared(t, teamA, teamA, name, tc.doA, tc.cdA, tc.doB, tc.cdB); got != tc.hit {
				t.Errorf("A DO=%v CD=%v, B DO=%v CD=%v: L2 hit %v, want %v", tc.doA, tc.cdA, tc.doB, tc.cdB, got, tc.hit)
			}
		}
	})

	t.Run("SIGSTOP", func(t *testing.T) {
		rs.Stop()
		defer rs.Resume()
		// Every query is answered, by the upstream, and none waits for
		// Redis past the budget: the slack covers the upstream and a
		// loaded test machine, not Redis, whose lookups time out only
		// after 4s, in the background.
		const n = 150
		const slack = time.Second
		var lat []time.Duration
		for i := range n {
			m, took := l2Query(t, b, teamA, fmt.Sprintf("stop%d.test.example.", i), false, false)
			if m.Rcode != dns.RcodeNameError {
				t.Fatalf("query %d: %v", i, m)
			}
			lat = append(lat, took)
		}
		slices.Sort(lat)
		if lat[n-1] >= 3*time.Second {
			t.Errorf("a query took %s with Redis stopped: it waited for Redis", lat[n-1])
		}
		if p99 := lat[n*99/100-1]; p99 > budget+slack {
			t.Errorf("p99 %s with Redis stopped, want at most the budget %s + %s", p99, budget, slack)
		}
		if metric(t, b, "dnsedge_l2_budget_exceeded_total") < 1 {
			t.Error("no lookup ran past the budget with Redis stopped")
		}
		// Open, or half-open while its probe waits on the stopped Redis.
		waitUntil(t, "B's breaker to open", 5*time.Second, func() bool { return metric(t, b, "dnsedge_l2_breaker_state") != 0 })
		if metric(t, b, "dnsedge_l2_skipped_total") < 1 {
			t.Error("no lookup skipped Redis with the breaker open")
		}
	})
	// probes counts the names asked only to give the breaker misses to
	// start its probes from (a hit never asks Redis, nor probes it).
	probes := 0
	miss := func(t *testing.T, e *testEdge) {
		probes++
		l2Query(t, e, teamA, fmt.Sprintf("probe%d.test.example.", probes), false, false)
	}
	// Resumed: the probe closes the breaker again.
	waitUntil(t, "B's breaker to close after SIGCONT", 5*time.Second, func() bool {
		miss(t, b)
		return metric(t, b, "dnsedge_l2_breaker_state") == 0
	})

	t.Run("SIGKILL and restart", func(t *testing.T) {
		opens := metric(t, a, "dnsedge_l2_breaker_opens_total")
		rs.Kill()
		for i := range 20 {
			l2Query(t, a, teamA, fmt.Sprintf("dead%d.test.example.", i), false, false)
		}
		waitUntil(t, "A's breaker to open", 5*time.Second, func() bool {
			return metric(t, a, "dnsedge_l2_breaker_opens_total") > opens && metric(t, a, "dnsedge_l2_breaker_state") != 0
		})
		if err := rs.Restart(); err != nil {
			t.Fatal(err)
		}
		for _, e := range []*testEdge{a, b} {
			waitUntil(t, "the breaker to close after the restart", 5*time.Second, func() bool {
				miss(t, e)
				return metric(t, e, "dnsedge_l2_breaker_state") == 0
			})
		}
		writes = metric(t, a, "dnsedge_l2_writes_total")
		if !shared(t, teamA, teamA, "h10.test.example.", false, false, false, false) {
			t.Error("no L2 hit after Redis restarted")
		}
	})

	t.Run("tampered value", func(t *testing.T) {
		l2Query(t, a, teamA, "h11.test.example.", false, false)
		writes++
		written(t, writes)
		c := rs.Client()
		defer c.Close()
		ctx := context.Background()
		keys, err := c.Keys(ctx, "dnsedge:v1:*h11*").Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("keys of h11: %q, %v", keys, err)
		}
		v, err := c.Get(ctx, keys[0]).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		v[14] ^= 0x7f // the TTL
		if err := c.Set(ctx, keys[0], v, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		before := upstreamB()
		l2Query(t, b, teamA, "h11.test.example.", false, false)
		if upstreamB() != before+1 {
			t.Error("B answered a tampered value from L2")
		}
		if got := metric(t, b, `dnsedge_l2_rejected_total{reason="mac"}`); got != 1 {
			t.Errorf("dnsedge_l2_rejected_total{reason=\"mac\"} = %v, want 1", got)
		}
	})
}

// TestL2RedisTLS runs the shared cache over TLS with a client certificate
// (tls-auth-clients) and an ACL user: an answer one instance resolved is
// the other's L2 hit.
func TestL2RedisTLS(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := transporttest.NewCA(t)
	leafKey, err := x509.MarshalPKCS8PrivateKey(ca.Leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := write("ca.pem", ca.PEM)
	certFile := write("leaf.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Leaf.Certificate[0]}))
	keyFile := write("leaf.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: leafKey}))
	rs := redistest.Start(t, redistest.Options{
		Args: []string{"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "yes"},
		TLS:  &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Leaf}, MinVersion: tls.VersionTLS12},
	})
	fleetKey := write("fleet.key", []byte("fleet-key-for-the-l2-tls-test-0123456789"))
	pwFile := write("redis.password", []byte(redistest.Password))
	config := func(up *transporttest.Server) string {
		return fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
health:
  probe_interval: -1s
metrics: {address: "127.0.0.1:0"}
cache:
  l2:
    redis:
      address: %q
      username: %s
      password_file: %q
      tls: {ca_file: %q, cert_file: %q, key_file: %q}
    key_file: %q
    budget: 200ms   # Redis wins even on a loaded machine (see TestL2SharedCache)
    timeout: 2s     # TLS handshakes under the race detector on a busy machine
`, up.AddrV4(), rs.Addr(), redistest.User, pwFile, caFile, certFile, keyFile, fleetKey)
	}
	upA := transporttest.StartFault(t, upstreamZone)
	upB := transporttest.StartFault(t, upstreamZone)
	a := startEdge(t, config(upA))
	b := startEdge(t, config(upB))
	l2Query(t, a, "127.0.0.1", "h1.test.example.", false, false)
	waitUntil(t, "A's write to Redis over TLS", 5*time.Second, func() bool { return metric(t, a, "dnsedge_l2_writes_total") >= 1 })
	before := upB.Count("ipv4", "udp")
	l2Query(t, b, "127.0.0.1", "h1.test.example.", false, false)
	if upB.Count("ipv4", "udp") != before || metric(t, b, "dnsedge_l2_hits_total") != 1 {
		t.Errorf("no L2 hit over TLS: %v lookups, %v errors, %v past the budget", metric(t, b, "dnsedge_l2_lookups_total"),
			metric(t, b, "dnsedge_l2_lookup_errors_total"), metric(t, b, "dnsedge_l2_budget_exceeded_total"))
	}
}
