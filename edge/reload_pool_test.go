package edge_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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

// connCounter forwards TCP connections to target and counts them.
type connCounter struct {
	ln    net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

func countConns(t *testing.T, target string) *connCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &connCounter{ln: ln}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.conns.Add(1)
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.wg.Add(2)
			pipe := func(a, b net.Conn) {
				defer c.wg.Done()
				io.Copy(a, b)
				a.Close()
				b.Close()
			}
			go pipe(in, out)
			go pipe(out, in)
		}
	}()
	t.Cleanup(func() { ln.Close(); c.wg.Wait() })
	return c
}

func (c *connCounter) port() int { return c.ln.Addr().(*net.TCPAddr).Port }

// TestReloadUnchangedFileBuildsNothing: a reload of the same file keeps
// the running upstream (no resolution of its host name, no new connection)
// and its health, and the cache with what it holds.
func TestReloadUnchangedFileBuildsNothing(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	proxy := countConns(t, up.AddrV4().String())
	boot := transporttest.StartBootstrap(t, "dns.test. 300 IN A 127.0.0.1\n")
	text := fmt.Sprintf(`upstreams:
  - {name: up, url: "tcp://dns.test:%d"}
bootstrap: ["%s"]
health: {probe_interval: -1s}
cache: {enabled: true}
`, proxy.port(), boot.Addr())
	e := startEdge(t, text)
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	ask := func(name string) {
		t.Helper()
		m, _, err := c.Exchange(ednsQuery(name, dns.TypeA), e.udp.String())
		if err != nil || m.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s: %v %v", name, m, err)
		}
	}
	ask("h1.test.example.")
	before := pathOf(t, e, transport.IPv4)
	resolutions, conns, queries := boot.Count(), proxy.conns.Load(), up.Count("ipv4", "tcp")
	if conns != 1 {
		t.Fatalf("%d connections to the upstream after one query, want 1", conns)
	}
	for range 3 {
		cfg, err := edge.Parse("test.yaml", []byte(testListeners+text))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	ask("h1.test.example.") // from the cache the reloads kept
	if n := up.Count("ipv4", "tcp"); n != queries {
		t.Errorf("the upstream got %d more queries: the cache was not kept", n-queries)
	}
	ask("h2.test.example.")
	if n := boot.Count(); n != resolutions {
		t.Errorf("three reloads of an unchanged file resolved the upstream's host name %d more times, want 0", n-resolutions)
	}
	if n := proxy.conns.Load(); n != conns {
		t.Errorf("three reloads of an unchanged file opened %d new upstream connections, want 0", n-conns)
	}
	if after := pathOf(t, e, transport.IPv4); after != before || after.Health != before.Health {
		t.Error("the reload replaced the running path")
	}
}

// TestReloadHealthSettingsReachLivePaths: a changed health section applies
// to the paths already running, which keep what they measured.
func TestReloadHealthSettingsReachLivePaths(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	text := fmt.Sprintf("upstreams:\n  - {name: v4, url: \"udp://%s\"}\n", up.AddrV4())
	e := startEdge(t, text+"health: {failure_threshold: 5, probe_interval: -1s}\n")
	p := pathOf(t, e, transport.IPv4)
	for range 2 {
		p.Health.Observe(time.Millisecond, transport.ClassNetwork)
	}
	cfg, err := edge.Parse("test.yaml", []byte(testListeners+text+"health: {failure_threshold: 3, probe_interval: -1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if q := pathOf(t, e, transport.IPv4); q.Health != p.Health {
		t.Fatal("the reload gave the path a new health: what it measured is lost")
	}
	p.Health.Observe(time.Millisecond, transport.ClassNetwork)
	if s := p.Health.Snapshot(); s.State != transport.Open {
		t.Fatalf("breaker %s after 3 failures with failure_threshold 3 reloaded onto the live path, want open", s.State)
	}
}

// TestReloadLogLevel: log.level is part of the configuration a reload
// applies.
func TestReloadLogLevel(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	text := testListeners + fmt.Sprintf("upstreams:\n  - {name: v4, url: \"udp://%s\"}\n", up.AddrV4())
	cfg, err := edge.Parse("test.yaml", []byte(text+"log: {level: warn}\n"))
	if err != nil {
		t.Fatal(err)
	}
	logs := new(syncBuffer)
	log, level := edge.NewLogger(logs, cfg.Log)
	srv, err := edge.New(cfg, edge.Options{Logger: log, Level: level})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelWarn {
		t.Fatalf("level %s, want warn", level.Level())
	}
	next, err := edge.Parse("test.yaml", []byte(text+"log: {level: debug}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(next); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelDebug {
		t.Fatalf("level %s after a reload to debug", level.Level())
	}
	if !strings.Contains(logs.String(), "configuration reloaded") {
		t.Fatalf("the reload was not logged at the new level:\n%s", logs)
	}
}

// TestReloadHTTPEndpoint: the metrics endpoint follows the configuration
// in force: pprof turns on and off without rebinding, and a new address
// moves the endpoint.
func TestReloadHTTPEndpoint(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	base := fmt.Sprintf("upstreams:\n  - {name: v4, url: \"udp://%s\"}\n", up.AddrV4())
	e := startEdge(t, base+"metrics: {address: \"127.0.0.1:0\"}\n")
	status := func(addr, path string) int {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	reload := func(text string) {
		t.Helper()
		cfg, err := edge.Parse("test.yaml", []byte(testListeners+base+text))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	first := e.srv.MetricsAddr().String()
	if c := status(first, "/debug/pprof/"); c != http.StatusNotFound {
		t.Fatalf("pprof off: status %d, want 404", c)
	}
	reload("metrics: {address: \"127.0.0.1:0\", pprof: true}\n")
	if got := e.srv.MetricsAddr().String(); got != first {
		t.Fatalf("turning pprof on moved the endpoint from %s to %s", first, got)
	}
	if c := status(first, "/debug/pprof/"); c != http.StatusOK {
		t.Fatalf("pprof on: status %d, want 200", c)
	}
	next := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	reload(fmt.Sprintf("metrics: {address: %q}\n", next))
	if got := e.srv.MetricsAddr().String(); got != next {
		t.Fatalf("endpoint on %s after a reload to %s", got, next)
	}
	if c := status(next, "/metrics"); c != http.StatusOK {
		t.Fatalf("metrics on the new address: status %d", c)
	}
	if c := status(first, "/metrics"); c != 0 {
		t.Fatalf("the old address still answers (status %d)", c)
	}
	reload("")
	if a := e.srv.MetricsAddr(); a != nil {
		t.Fatalf("endpoint still on %s after metrics was removed", a)
	}
}

// TestReloadServerLimits: server limits changed by a reload apply to the
// listeners already running, without rebinding them.
func TestReloadServerLimits(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	base := fmt.Sprintf("upstreams:\n  - {name: v4, url: \"udp://%s\"}\n", up.AddrV4())
	e := startEdge(t, base)
	// connsAnswered opens two TCP connections, holds both open, and
	// returns how many answered a query.
	connsAnswered := func() int {
		t.Helper()
		n := 0
		for range 2 {
			conn, err := dns.DialTimeout("tcp", e.tcp.String(), 3*time.Second)
			if err != nil {
				continue
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			if conn.WriteMsg(ednsQuery("h1.test.example.", dns.TypeA)) != nil {
				continue
			}
			if _, err := conn.ReadMsg(); err == nil {
				n++
			}
		}
		return n
	}
	if n := connsAnswered(); n != 2 {
		t.Fatalf("%d of 2 connections answered with the default max_tcp_connections", n)
	}
	cfg, err := edge.Parse("test.yaml", []byte(testListeners+base+"server: {max_tcp_connections: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Addrs()["tcp"][0]; got != e.tcp {
		t.Fatalf("the TCP listener moved from %s to %s: it was rebound, not changed", e.tcp, got)
	}
	// The two connections of the first round count until the server has
	// read their close; while they do, no new connection is let in (0
	// answered). Ask again until they are gone: 2 answered fails at once.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := connsAnswered()
		if n == 1 {
			break
		}
		if n != 0 || time.Now().After(deadline) {
			t.Fatalf("%d of 2 connections held open at once answered after a reload to max_tcp_connections 1", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConfigReloadUnderLoad reloads the configuration 50 times,
// alternating two files that differ in upstreams, cache, health and
// metrics, while clients query over UDP and TCP: no query is lost.
func TestConfigReloadUnderLoad(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	files := [2]string{
		fmt.Sprintf(`upstreams:
  - {name: v4, url: "udp://%s"}
cache: {max_entries: 1000}
health: {failure_threshold: 5}
`, up.AddrV4()),
		fmt.Sprintf(`upstreams:
  - {name: v4, url: "udp://%s"}
  - {name: tcp4, url: "tcp://%s"}
cache: {max_entries: 2000, prefetch: false}
health: {failure_threshold: 3}
metrics: {address: "127.0.0.1:0"}
`, up.AddrV4(), up.AddrV4()),
	}
	var cfgs [2]*edge.Config
	for i, f := range files {
		cfg, err := edge.Parse("test.yaml", []byte(testListeners+f))
		if err != nil {
			t.Fatal(err)
		}
		cfgs[i] = cfg
	}
	e := startEdge(t, files[0])
	var (
		stop     atomic.Bool
		answered atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
	)
	deadline := time.Now().Add(60 * time.Second)
	for i := range 4 {
		proto, addr := "udp", e.udp.String()
		if i%2 == 1 {
			proto, addr = "tcp", e.tcp.String()
		}
		wg.Go(func() {
			c := &dns.Client{Net: proto, Timeout: 2 * time.Second}
			for n := 0; !stop.Load() && n < 100000 && time.Now().Before(deadline); n++ {
				name := fmt.Sprintf("h%d.test.example.", n%20)
				m, _, err := c.Exchange(ednsQuery(name, dns.TypeA), addr)
				if err == nil && (m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1) {
					err = fmt.Errorf("%s over %s: %s with %d answers", name, proto, dns.RcodeToString[m.Rcode], len(m.Answer))
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				answered.Add(1)
			}
		})
	}
	for i := 1; i <= 50; i++ {
		if err := e.srv.Reload(cfgs[i%2]); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		// Let some queries meet each generation.
		for start := answered.Load(); answered.Load() < start+20 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d queries failed during 50 reloads; first: %s", len(failures), answered.Load()+int64(len(failures)), failures[0])
	}
	t.Logf("%d queries answered during 50 reloads", answered.Load())
}
