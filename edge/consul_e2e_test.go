package edge_test

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/internal/consultest"
)

// consulClient returns an API client for the test agent.
func consulClient(t *testing.T, a *consultest.Agent) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr, Scheme: "http", Token: "-"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// consulEdgeConfig is a dnsedge that answers the consul domain from the
// agent at addr; its one upstream is never asked.
func consulEdgeConfig(addr, extra string) string {
	return fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://127.0.0.1:9"}
metrics: {address: "127.0.0.1:0"}
consul:
  address: %q
  stale_after: 2s
  first_wait: 3s
%s`, addr, extra)
}

// askEDNS sends q over UDP with EDNS (1232 bytes).
func askEDNS(addr netip.AddrPort, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	m, _, err := c.Exchange(q, addr.String())
	return m, err
}

func addrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.AAAA:
			out = append(out, r.AAAA.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %d %s", r.Weight, r.Port, r.Target))
		}
	}
	slices.Sort(out)
	return out
}

func hasEDE(m *dns.Msg, code uint16) bool {
	return slices.Contains(edeCodes(m), code)
}

// queryLoad queries name over UDP from a few goroutines, at most about
// rate per second, until stop, and counts the answers that failed:
// SERVFAIL, no answer, or an error.
type queryLoad struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	failures     []string
	stop         chan struct{}
	done         sync.WaitGroup
}

func startLoad(t *testing.T, addr netip.AddrPort, name string, rate int) *queryLoad {
	t.Helper()
	l := &queryLoad{stop: make(chan struct{})}
	const workers = 8
	// Bounded in count as well as by stop: rate per second for 2 minutes.
	budget := int64(rate * 120)
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for l.sent.Add(1) <= budget {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				m, err := askEDNS(addr, name, dns.TypeA)
				if err != nil || m.Rcode == dns.RcodeServerFailure {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.failures) < 10 {
						l.failures = append(l.failures, fmt.Sprintf("%v %v", err, m))
					}
					l.mu.Unlock()
				}
			}
		}()
	}
	t.Cleanup(l.end)
	return l
}

func (l *queryLoad) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// within polls cond every 10 ms until it holds or d passes, and returns
// how long it took; it fails the test when it never held.
func within(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConsulDiscovery is the Consul acceptance test against a real
// agent: an instance registered with a TTL check is answered in A, AAAA,
// SRV and by tag; a failed check takes it out of the answers within 1 s
// and a passing one brings it back, with no SERVFAIL under a steady
// query load; with the agent stopped answers go on from the last view,
// then carry EDE 3; once the agent is back the view recovers within 5 s.
func TestConsulDiscovery(t *testing.T) {
	a := consultest.Start(t)
	c := consulClient(t, a)
	reg := func(s *api.AgentServiceRegistration) {
		t.Helper()
		if err := c.Agent().ServiceRegister(s); err != nil {
			t.Fatal(err)
		}
	}
	reg(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 8081, Tags: []string{"v1"},
		TaggedAddresses: map[string]api.ServiceAddress{"lan_ipv6": {Address: "2001:db8::11", Port: 8081}},
		Weights:         &api.AgentWeights{Passing: 10, Warning: 1},
		Check:           &api.AgentServiceCheck{CheckID: "web-1-ttl", TTL: "10m", Status: api.HealthPassing}})
	reg(&api.AgentServiceRegistration{ID: "web-2", Name: "web", Port: 8082, Address: "127.0.0.2", Tags: []string{"v2"},
		Weights: &api.AgentWeights{Passing: 5, Warning: 1},
		Check:   &api.AgentServiceCheck{CheckID: "web-2-ttl", TTL: "10m", Status: api.HealthPassing}})

	e := startEdge(t, consulEdgeConfig(a.HTTPAddr, ""))
	ask := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		m, err := askEDNS(e.udp, name, qtype)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	both := []string{"127.0.0.1", "127.0.0.2"}
	within(t, "both instances answered", 5*time.Second, func() bool {
		return slices.Equal(addrs(ask("web.service.consul.", dns.TypeA)), both)
	})
	// dnsperf at 1,000 queries per second when it is installed, else a
	// Go client loop (slower under the race detector); both bounded.
	perf := startDnsperf(t, e.udp, "web.service.consul.", 1000)
	load := startLoad(t, e.udp, "web.service.consul.", 200)
	loadStart := time.Now()

	checks := []struct {
		name  string
		qtype uint16
		want  []string
		extra int
	}{
		{"web.service.consul.", dns.TypeAAAA, []string{"2001:db8::11"}, 0},
		{"v1.web.service.consul.", dns.TypeA, []string{"127.0.0.1"}, 0},
		{"v2.web.service.dc1.consul.", dns.TypeA, []string{"127.0.0.2"}, 0},
		{"_web._tcp.service.consul.", dns.TypeSRV, []string{"10 8081 " + a.Node + ".node.consul.", "5 8082 7f000002.addr.consul."}, 3},
		{"_web._v1.service.consul.", dns.TypeSRV, []string{"10 8081 " + a.Node + ".node.consul."}, 2},
		{a.Node + ".node.consul.", dns.TypeA, []string{"127.0.0.1"}, 0},
	}
	for _, ck := range checks {
		m := ask(ck.name, ck.qtype)
		if got := addrs(m); !slices.Equal(got, ck.want) || m.Rcode != dns.RcodeSuccess {
			t.Errorf("%s %s: %s %v, want %v", ck.name, dns.TypeToString[ck.qtype], dns.RcodeToString[m.Rcode], got, ck.want)
		}
		if n := len(m.Extra) - 1; n != ck.extra { // less the OPT
			t.Errorf("%s %s: %d additional records, want %d: %v", ck.name, dns.TypeToString[ck.qtype], n, ck.extra, m.Extra)
		}
	}

	if err := c.Agent().FailTTL("web-1-ttl", "down"); err != nil {
		t.Fatal(err)
	}
	took := within(t, "failed instance gone", 3*time.Second, func() bool {
		return slices.Equal(addrs(ask("web.service.consul.", dns.TypeA)), []string{"127.0.0.2"})
	})
	t.Logf("failed instance left the answers in %s", took)
	if took > time.Second {
		t.Errorf("the failed instance left the answers after %s, want within 1 s", took)
	}
	if m := ask("v1.web.service.consul.", dns.TypeA); m.Rcode != dns.RcodeNameError {
		t.Errorf("tag of the failed instance: %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
	if err := c.Agent().PassTTL("web-1-ttl", "up"); err != nil {
		t.Fatal(err)
	}
	took = within(t, "instance back", 3*time.Second, func() bool {
		return slices.Equal(addrs(ask("web.service.consul.", dns.TypeA)), both)
	})
	t.Logf("passing instance back in %s", took)
	if took > time.Second {
		t.Errorf("the passing instance came back after %s, want within 1 s", took)
	}

	a.Stop()
	stopped := time.Now()
	for range 20 {
		m := ask("web.service.consul.", dns.TypeA)
		if !slices.Equal(addrs(m), both) {
			t.Fatalf("with consul down: %v", m)
		}
		if hasEDE(m, dns.ExtendedErrorCodeStaleAnswer) {
			if time.Since(stopped) < 2*time.Second {
				t.Fatalf("EDE 3 %s after consul stopped, before stale_after (2s)", time.Since(stopped))
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	within(t, "EDE 3 on answers from the old view", 5*time.Second, func() bool {
		m := ask("web.service.consul.", dns.TypeA)
		return slices.Equal(addrs(m), both) && hasEDE(m, dns.ExtendedErrorCodeStaleAnswer)
	})
	metrics := scrape(t, e)
	if !strings.Contains(metrics, `dnsedge_consul_view_age_seconds{datacenter="",kind="service",name="web"}`) {
		t.Errorf("no view age metric:\n%s", grepLines(metrics, "dnsedge_consul"))
	}

	a.Start()
	// The agent restores the registrations from its data directory; a
	// TTL check comes back critical until its service reports again, as
	// a live one would.
	for _, id := range []string{"web-1-ttl", "web-2-ttl"} {
		if err := c.Agent().PassTTL(id, "up"); err != nil {
			t.Fatal(err)
		}
	}
	var last *dns.Msg
	t.Cleanup(func() {
		if t.Failed() && last != nil {
			t.Logf("last answer after the restart:\n%v", last)
		}
	})
	took = within(t, "view recovered", 8*time.Second, func() bool {
		m := ask("web.service.consul.", dns.TypeA)
		last = m
		return slices.Equal(addrs(m), both) && !hasEDE(m, dns.ExtendedErrorCodeStaleAnswer)
	})
	t.Logf("view recovered %s after the agent came back", took)
	if took > 5*time.Second+500*time.Millisecond {
		t.Errorf("the view recovered %s after consul came back, want within 5 s", took)
	}
	load.end()
	if n := load.failed.Load(); n > 0 {
		t.Errorf("%d of %d queries failed under load: %v", n, load.sent.Load(), load.failures)
	}
	t.Logf("%d queries under load in %s, none failed", load.sent.Load(), time.Since(loadStart).Round(time.Millisecond))
	if perf != nil {
		perf.check(t)
	}
}

func scrape(t *testing.T, e *testEdge) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + e.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestConsulReloadKeepsWatches: a reload that keeps the consul section
// keeps the backend, its watches and their views.
func TestConsulReloadKeepsWatches(t *testing.T) {
	a := consultest.Start(t)
	c := consulClient(t, a)
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "db-1", Name: "db", Port: 5432}); err != nil {
		t.Fatal(err)
	}
	conf := consulEdgeConfig(a.HTTPAddr, "")
	e := startEdge(t, conf)
	within(t, "db answered", 5*time.Second, func() bool {
		m, err := askEDNS(e.udp, "db.service.consul.", dns.TypeA)
		return err == nil && slices.Equal(addrs(m), []string{"127.0.0.1"})
	})
	const started = `dnsedge_consul_watch_events_total{event="started"} 1`
	if m := scrape(t, e); !strings.Contains(m, started) {
		t.Fatalf("metrics lack %s:\n%s", started, grepLines(m, "dnsedge_consul"))
	}
	cfg, err := edge.Parse("test.yaml", []byte(testListeners+conf+"log: {level: debug}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if m, err := askEDNS(e.udp, "db.service.consul.", dns.TypeA); err != nil || !slices.Equal(addrs(m), []string{"127.0.0.1"}) {
		t.Fatalf("after reload: %v %v", m, err)
	}
	if m := scrape(t, e); !strings.Contains(m, started) || !strings.Contains(m, "dnsedge_consul_watches 1") {
		t.Errorf("the reload started the watch again:\n%s", grepLines(m, "dnsedge_consul_watch"))
	}
}

// dnsperfRun is dnsperf querying one name until check stops it.
type dnsperfRun struct {
	cmd *exec.Cmd
	out strings.Builder
}

// startDnsperf starts dnsperf against addr at qps queries per second for
// at most a minute; nil when dnsperf is not installed.
func startDnsperf(t *testing.T, addr netip.AddrPort, name string, qps int) *dnsperfRun {
	t.Helper()
	bin, err := exec.LookPath("dnsperf")
	if err != nil {
		t.Logf("dnsperf not installed: the Go client loop alone loads the name")
		return nil
	}
	qfile := filepath.Join(t.TempDir(), "queries.txt")
	if err := os.WriteFile(qfile, []byte(name+" A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &dnsperfRun{}
	r.cmd = exec.Command(bin, "-s", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())), "-d", qfile,
		"-l", "60", "-Q", strconv.Itoa(qps), "-t", "2")
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	return r
}

// check interrupts dnsperf and fails the test when a query was lost or
// answered SERVFAIL.
func (r *dnsperfRun) check(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGINT)
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, r.out.String())
	}
	out := r.out.String()
	sent := regexp.MustCompile(`Queries sent:\s+(\d+)`).FindStringSubmatch(out)
	lost := regexp.MustCompile(`Queries lost:\s+(\d+)`).FindStringSubmatch(out)
	qps := regexp.MustCompile(`Queries per second:\s+([\d.]+)`).FindStringSubmatch(out)
	if sent == nil || lost == nil || qps == nil {
		t.Fatalf("dnsperf output not understood:\n%s", out)
	}
	if lost[1] != "0" || strings.Contains(out, "SERVFAIL") {
		t.Errorf("dnsperf: %s sent, %s lost:\n%s", sent[1], lost[1], out)
	}
	t.Logf("dnsperf: %s queries at %s per second, none lost, no SERVFAIL", sent[1], qps[1])
}
