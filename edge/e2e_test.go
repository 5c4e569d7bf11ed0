package edge_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
)

// upstreamZone is what the fault-injecting upstream serves.
var upstreamZone = `$ORIGIN test.example.
$TTL 60
@    IN SOA ns hostmaster 1 3600 600 86400 30
@    IN NS  ns
ns   IN A   192.0.2.53
` + hosts

var hosts = func() string {
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, "h%d IN A 192.0.2.%d\nh%d IN AAAA 2001:db8::%d\n", i, i+1, i, i+1)
	}
	return b.String() + transporttest.BigTXT("big.test.example.", 20)
}()

// syncBuffer collects logs from every goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testListeners is how every test server listens; a reload that keeps
// these lines keeps the same sockets.
const testListeners = `listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
`

type testEdge struct {
	srv      *edge.Server
	udp, tcp netip.AddrPort
	logs     *syncBuffer
}

// startEdge runs dnsedge in-process on the configuration text, with UDP and
// TCP listeners on 127.0.0.1 ephemeral ports.
func startEdge(t *testing.T, config string) *testEdge {
	t.Helper()
	cfg, err := edge.Parse("test.yaml", []byte(testListeners+config))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := new(syncBuffer)
	srv, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addrs := srv.Addrs()
	return &testEdge{srv: srv, udp: addrs["udp"][0], tcp: addrs["tcp"][0], logs: logs}
}

// seedConfig is the seed document's setup: one upstream by host name, both
// families, a bootstrap resolver that gives 127.0.0.1 and ::1 for it.
func seedConfig(boot netip.AddrPort, port uint16) string {
	return fmt.Sprintf(`upstreams:
  - name: up
    url: udp://dns.test:%d
bootstrap: ["%s"]
health:
  failure_threshold: 5
  cooldown: 200ms
  max_cooldown: 1s
  min_timeout: 100ms
  max_timeout: 400ms
  initial_timeout: 200ms
  probe_interval: 100ms
server:
  query_timeout: 3s
log:
  queries: true
`, port, boot)
}

const bothFamilies = `dns.test. 300 IN A 127.0.0.1
dns.test. 300 IN AAAA ::1
`

func pathOf(t *testing.T, e *testEdge, fam transport.Family) *transport.Path {
	t.Helper()
	for _, p := range e.srv.Groups()[edge.DefaultGroup].Paths() {
		if p.Family == fam {
			return p
		}
	}
	t.Fatalf("no %s path; paths: %v", fam, e.srv.Groups()[edge.DefaultGroup].Paths())
	return nil
}

// load sends n mixed A/AAAA queries over UDP from a few concurrent
// clients and returns every latency in order of completion and the
// failures.
func load(t *testing.T, addr netip.AddrPort, n int) (lat []time.Duration, failures []string) {
	t.Helper()
	const workers = 8
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				q := new(dns.Msg)
				qt := dns.TypeA
				if i%2 == 1 {
					qt = dns.TypeAAAA
				}
				q.SetQuestion(fmt.Sprintf("h%d.test.example.", i%20), qt)
				m, rtt, err := c.Exchange(q, addr.String())
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1:
					failures = append(failures, fmt.Sprintf("%s: rcode %s, %d answers", q.Question[0].Name, dns.RcodeToString[m.Rcode], len(m.Answer)))
				default:
					lat = append(lat, rtt)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, failures
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSeedShape is the failure the project exists to fix: an upstream
// given by host name, resolving to 127.0.0.1 and ::1, with the IPv6 path
// blackholed. A forwarder with one health state per upstream opens its
// breaker and drops the good IPv4 path too; dnsedge answers every query
// and the IPv4 path's breaker never opens.
func TestSeedShape(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	boot := transporttest.StartBootstrap(t, bothFamilies)
	e := startEdge(t, seedConfig(boot.Addr(), up.Port()))
	v4, v6 := pathOf(t, e, transport.IPv4), pathOf(t, e, transport.IPv6)
	up.Set(transporttest.Faults{DropIPv6: true})

	_, failures := load(t, e.udp, 1000)
	if len(failures) > 0 {
		t.Fatalf("%d of 1000 queries failed, first: %s\nlogs:\n%s", len(failures), failures[0], tail(e.logs.String(), 20))
	}
	if s := v4.Health.Snapshot(); s.Transitions[transport.Open] != 0 || s.State != transport.Closed {
		t.Fatalf("IPv4 path breaker: state %s, opened %d times", s.State, s.Transitions[transport.Open])
	}
	// The load may be over before the IPv6 path was ever tried (the
	// measured IPv4 path goes first): the probes then find it dead.
	waitUntil(t, "IPv6 path demoted or open", 10*time.Second, func() bool {
		s := v6.Health.Snapshot()
		return s.Demoted || s.State != transport.Closed
	})
}

// tail returns the last n lines of s, for failure messages.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
