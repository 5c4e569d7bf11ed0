package edge_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
)

// literalConfig forwards to the fault server's IPv4 and IPv6 addresses as
// two upstreams.
func literalConfig(up *transporttest.Server, extra string) string {
	return fmt.Sprintf(`upstreams:
  - {name: v4, url: "udp://%s"}
  - {name: v6, url: "udp://%s"}
health:
  failure_threshold: 2
  cooldown: 100ms
  max_cooldown: 200ms
  min_timeout: 50ms
  max_timeout: 200ms
  initial_timeout: 100ms
server:
  query_timeout: 2s
`, up.AddrV4(), up.AddrV6()) + extra
}

func ednsQuery(name string, qtype uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, false)
	return q
}

func edeOf(m *dns.Msg) int {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return int(e.InfoCode)
			}
		}
	}
	return -1
}

func TestTruncation(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, literalConfig(up, ""))
	q := new(dns.Msg)
	q.SetQuestion("big.test.example.", dns.TypeTXT)
	m, _, err := (&dns.Client{Net: "udp", Timeout: 3 * time.Second}).Exchange(q, e.udp.String())
	if err != nil {
		t.Fatal(err)
	}
	m.Compress = true
	if !m.Truncated || m.Len() > 512 {
		t.Fatalf("UDP answer without EDNS: TC=%v, %d bytes; want TC within 512 bytes", m.Truncated, m.Len())
	}
	m, _, err = (&dns.Client{Net: "tcp", Timeout: 3 * time.Second}).Exchange(q, e.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	if m.Truncated || len(m.Answer) != 20 {
		t.Fatalf("TCP answer: TC=%v, %d records; want all 20", m.Truncated, len(m.Answer))
	}
}

// TestAllBreakersOpenThenBack: with the upstream down every breaker opens
// and queries fail with EDE 22; when it comes back, queries succeed again
// at once, with no restart, because a group whose breakers are all open
// still tries the one that opened longest ago.
func TestAllBreakersOpenThenBack(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, literalConfig(up, ""))
	up.Set(transporttest.Faults{Down: true})
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	paths := e.srv.Groups()[edge.DefaultGroup].Paths()
	allOpen := func() bool {
		for _, p := range paths {
			if p.Health.Snapshot().Transitions[transport.Open] == 0 {
				return false
			}
		}
		return true
	}
	for i := 0; !allOpen(); i++ {
		if i == 20 {
			t.Fatalf("breakers not all open after 20 queries")
		}
		m, _, err := c.Exchange(ednsQuery("h1.test.example.", dns.TypeA), e.udp.String())
		if err != nil {
			t.Fatal(err)
		}
		if m.Rcode != dns.RcodeServerFailure || edeOf(m) != int(dns.ExtendedErrorCodeNoReachableAuthority) {
			t.Fatalf("with the upstream down: rcode %s EDE %d, want SERVFAIL with EDE 22", dns.RcodeToString[m.Rcode], edeOf(m))
		}
	}
	up.Set(transporttest.Faults{})
	// Another name than the one that failed: when the last query above
	// ended with every path failed before its deadline, its failure is
	// cached for that name (RFC 9520), which is right and not what this
	// test is about.
	m, _, err := c.Exchange(ednsQuery("h2.test.example.", dns.TypeA), e.udp.String())
	if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("first query after the upstream came back: %v %v", err, m)
	}
}

// TestTCPPipelining sends 100 queries on one connection before reading
// any answer; every answer matches its query by ID and name.
func TestTCPPipelining(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, literalConfig(up, ""))
	conn, err := net.Dial("tcp", e.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	want := make(map[uint16]string)
	var out []byte
	for i := range 100 {
		q := new(dns.Msg)
		q.SetQuestion(fmt.Sprintf("h%d.test.example.", i%20), dns.TypeA)
		q.Id = uint16(1000 + i)
		want[q.Id] = q.Question[0].Name
		b, _ := q.Pack()
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			t.Fatalf("read: %v (%d answers missing)", err, len(want))
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatal(err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatal(err)
		}
		if name, ok := want[m.Id]; !ok || name != m.Question[0].Name || len(m.Answer) != 1 {
			t.Fatalf("answer id %d for %s does not match a query", m.Id, m.Question[0].Name)
		}
		delete(want, m.Id)
	}
}

// TestForwardingLoop: two dnsedge instances pointed at each other. The
// query carries each instance's mark, so the first instance that sees its
// own mark again answers SERVFAIL and logs why, instead of the query
// circling until every hop times out.
func TestForwardingLoop(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	b := startEdge(t, literalConfig(up, ""))
	a := startEdge(t, fmt.Sprintf("upstreams:\n  - {name: b, url: \"udp://%s\"}\n", b.udp))
	loopBack, err := edge.Parse("b.yaml", []byte(testListeners+fmt.Sprintf("upstreams:\n  - {name: a, url: \"udp://%s\"}\n", a.udp)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Reload(loopBack); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, _, err := (&dns.Client{Net: "udp", Timeout: 5 * time.Second}).Exchange(ednsQuery("h1.test.example.", dns.TypeA), a.udp.String())
	if err != nil {
		t.Fatal(err)
	}
	if m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("loop took %v to be answered", d)
	}
	if !strings.Contains(a.logs.String(), "forwarding loop detected") {
		t.Fatalf("no loop warning logged:\n%s", tail(a.logs.String(), 10))
	}
}

// TestReload swaps the upstream on a running server; a reload that cannot
// bind its listener changes nothing.
func TestReload(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	other := transporttest.StartFault(t, `other.example. 60 IN A 192.0.2.99`)
	e := startEdge(t, literalConfig(up, ""))
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	ask := func(name string) int {
		m, _, err := c.Exchange(ednsQuery(name, dns.TypeA), e.udp.String())
		if err != nil {
			t.Fatal(err)
		}
		return m.Rcode
	}
	if rc := ask("h1.test.example."); rc != dns.RcodeSuccess {
		t.Fatalf("before reload: %s", dns.RcodeToString[rc])
	}
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad, err := edge.Parse("bad.yaml", []byte(testListeners+fmt.Sprintf("  - {proto: udp, address: \"%s\"}\nupstreams:\n  - {name: o, url: \"udp://%s\"}\n",
		busy.LocalAddr(), other.AddrV4())))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(bad); err == nil {
		t.Fatal("reload onto a busy address succeeded")
	}
	if rc := ask("h1.test.example."); rc != dns.RcodeSuccess {
		t.Fatalf("after a failed reload: %s, want the old upstream still answering", dns.RcodeToString[rc])
	}
	good, err := edge.Parse("good.yaml", []byte(testListeners+fmt.Sprintf("upstreams:\n  - {name: o, url: \"udp://%s\"}\n", other.AddrV4())))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(good); err != nil {
		t.Fatal(err)
	}
	if rc := ask("other.example."); rc != dns.RcodeSuccess {
		t.Fatalf("after reload: %s, want the new upstream", dns.RcodeToString[rc])
	}
}

func TestMetricsAndProbes(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, literalConfig(up, "metrics:\n  address: \"127.0.0.1:0\"\n"))
	if _, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(ednsQuery("h1.test.example.", dns.TypeA), e.udp.String()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + e.srv.MetricsAddr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	v4 := netip.MustParseAddrPort(up.AddrV4().String())
	for _, want := range []string{
		fmt.Sprintf(`dnsedge_path_breaker_state{address="%s",family="ipv4",proto="udp",upstream="v4"} 0`, v4),
		`dnsedge_path_exchanges_total{address="` + v4.String() + `",class="ok",family="ipv4",proto="udp",upstream="v4"} 1`,
		`dnsedge_path_srtt_seconds{`,
		`dnsedge_path_breaker_transitions_total{`,
		fmt.Sprintf(`dnsedge_path_loss_ratio{address="%s",family="ipv4",proto="udp",upstream="v4"} 0`, v4),
		fmt.Sprintf(`dnsedge_path_hedges_total{address="%s",family="ipv4",proto="udp",upstream="v4"} 0`, v4),
		fmt.Sprintf(`dnsedge_path_hedges_won_total{address="%s",family="ipv4",proto="udp",upstream="v4"} 0`, v4),
		fmt.Sprintf(`dnsedge_path_probes_total{address="%s",family="ipv4",proto="udp",upstream="v4"}`, v4),
		// The TCP side of the UDP path, where truncated answers go.
		fmt.Sprintf(`dnsedge_path_breaker_state{address="%s",family="ipv4",proto="tcp",upstream="v4"} 0`, v4),
		`dnsedge_listener_queries_total{listener="udp"} 1`,
		`dnsedge_listener_responses_total{listener="udp",rcode="NOERROR"} 1`,
		`dnsedge_config_reloads_total{result="failed"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}

	// Every upstream down: dnsedge still answers from its cache, zones
	// and fallback zone, so it stays ready; /healthz?verbose says why
	// forwarding fails.
	up.Stop()
	c := &dns.Client{Timeout: 3 * time.Second}
	for i := range 6 {
		c.Exchange(ednsQuery(fmt.Sprintf("down%d.test.example.", i), dns.TypeA), e.udp.String())
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz with every breaker open: %d %s, want 200", code, body)
	}
	code, body = get("/healthz?verbose")
	for _, want := range []string{
		"group default (sequential): 0 of 2 paths usable",
		fmt.Sprintf("ipv4 v4/udp/%s: breaker open", v4),
		fmt.Sprintf("ipv4 v4/tcp/%s: breaker closed", v4),
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/healthz?verbose: %d, lacks %q:\n%s", code, want, body)
		}
	}
	if _, body := get("/healthz"); strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz without verbose: %q, want ok", body)
	}
}

// TestNetworkErrorEDE: an upstream that refuses (nothing listens) gives
// SERVFAIL with EDE 23 Network Error, at once rather than after a timeout.
func TestNetworkErrorEDE(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, literalConfig(up, ""))
	up.Stop()
	m, _, err := (&dns.Client{Net: "udp", Timeout: 5 * time.Second}).Exchange(ednsQuery("h1.test.example.", dns.TypeA), e.udp.String())
	if err != nil {
		t.Fatal(err)
	}
	if m.Rcode != dns.RcodeServerFailure || edeOf(m) != int(dns.ExtendedErrorCodeNetworkError) {
		t.Fatalf("rcode %s EDE %d, want SERVFAIL with EDE 23", dns.RcodeToString[m.Rcode], edeOf(m))
	}
}

// TestOptionalListener: an optional listener that cannot be bound (as
// [::1] on a host without IPv6) is skipped with a warning; a required one
// fails the start.
func TestOptionalListener(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, optional := range []bool{true, false} {
		t.Run(fmt.Sprintf("optional=%v", optional), func(t *testing.T) {
			cfg, err := edge.Parse("t.yaml", []byte(testListeners+fmt.Sprintf("  - {proto: udp, address: \"%s\", optional: %v}\n", busy.LocalAddr(), optional)+literalConfig(up, "")))
			if err != nil {
				t.Fatal(err)
			}
			logs := new(syncBuffer)
			srv, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			err = srv.Start()
			if optional {
				if err != nil || !strings.Contains(logs.String(), "optional listener not started") {
					t.Fatalf("start: %v; logs: %s", err, logs.String())
				}
				if n := len(srv.Addrs()["udp"]); n != 1 {
					t.Fatalf("%d UDP listeners, want 1", n)
				}
			} else if err == nil || !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("start with a required listener on a busy address: %v", err)
			}
		})
	}
}
