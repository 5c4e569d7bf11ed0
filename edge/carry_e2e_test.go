package edge_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"google.golang.org/protobuf/proto"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
)

// seenQuery is what an upstream saw of one query: its ECS option, its
// tag and trace options, and for DoH its trace and tag headers.
type seenQuery struct {
	ecs, tagOpt, traceOpt string
	header                http.Header
}

func readSeen(m *dns.Msg, h http.Header) seenQuery {
	s := seenQuery{header: h}
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			switch o := o.(type) {
			case *dns.EDNS0_SUBNET:
				a, _ := netip.AddrFromSlice(o.Address)
				s.ecs = netip.PrefixFrom(a.Unmap(), int(o.SourceNetmask)).String()
			case *dns.EDNS0_LOCAL:
				switch o.Code {
				case 65001:
					s.tagOpt = string(o.Data)
				case 65002:
					s.traceOpt = string(o.Data)
				}
			}
		}
	}
	return s
}

// startCarryUpstream runs an upstream of scheme (udp or https) on
// loopback that answers every A query and reports what it saw.
func startCarryUpstream(t *testing.T, scheme string) (url string, ca string, seen chan seenQuery) {
	t.Helper()
	seen = make(chan seenQuery, 16)
	// Only the test's queries are reported: health probes carry nothing.
	ours := func(q *dns.Msg) bool { return len(q.Question) == 1 && q.Question[0].Name == carryName }
	answer := func(q *dns.Msg) *dns.Msg {
		m := new(dns.Msg).SetReply(q)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		return m
	}
	switch scheme {
	case "udp":
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			if ours(q) {
				seen <- readSeen(q, nil)
			}
			w.WriteMsg(answer(q))
		})}
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
		return "udp://" + pc.LocalAddr().String(), "", seen
	case "https":
		c := transporttest.NewCA(t)
		up := transporttest.StartDoH(t, transporttest.ServerConfig{CA: c, HTTP: func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			q := new(dns.Msg)
			if err := q.Unpack(body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if ours(q) {
				seen <- readSeen(q, r.Header.Clone())
			}
			wire, _ := answer(q).Pack()
			w.Header().Set("Content-Type", "application/dns-message")
			w.Write(wire)
		}})
		return fmt.Sprintf("https://dns.test:%d/dns-query", up.Addr().Port()), c.WritePEM(t), seen
	}
	t.Fatalf("unknown scheme %s", scheme)
	return
}

// startCarryEdge runs dnsedge with a cleartext DoH listener (h2c) and a
// UDP one, forwarding to url, with extra configuration.
func startCarryEdge(t *testing.T, url, ca, extra string) (doh, udp netip.AddrPort, logs *syncBuffer) {
	t.Helper()
	boot := transporttest.StartBootstrap(t, "dns.test. 300 IN A 127.0.0.1\n")
	caLine := ""
	if ca != "" {
		caLine = fmt.Sprintf(", ca_file: %q", ca)
	}
	conf := fmt.Sprintf(`listeners:
  - {proto: doh, address: "127.0.0.1:0", h2c: true}
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: %q, family: ipv4%s}
bootstrap: ["%s"]
cache: {enabled: false}
log: {queries: true}
%s`, url, caLine, boot.Addr(), extra)
	cfg, err := edge.Parse("carry.yaml", []byte(conf))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs = new(syncBuffer)
	srv, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	a := srv.Addrs()
	return a["doh"][0], a["udp"][0], logs
}

// dohPost sends q to the DoH listener with hdr and returns the answer and
// the response headers.
func dohPost(t *testing.T, addr netip.AddrPort, q *dns.Msg, hdr map[string]string) (*dns.Msg, http.Header) {
	t.Helper()
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr.String()+"/dns-query", bytes.NewReader(wire))
	req.Header.Set("Content-Type", "application/dns-message")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: %s", resp.Status, body)
	}
	m := new(dns.Msg)
	if err := m.Unpack(body); err != nil {
		t.Fatal(err)
	}
	return m, resp.Header
}

const carryName = "www.carry.example."

func carryQuery(opts ...dns.EDNS0) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(carryName, dns.TypeA)
	q.Id = 0
	q.SetEdns0(1232, false)
	q.IsEdns0().Option = opts
	return q
}

// TestCarryTraceAndTags: a DoH query with a traceparent and a trusted
// client's tag option reaches the upstream with the same trace id and the
// tags: as headers on a DoH upstream, as EDNS options on any other. The
// answer echoes the trace id, and the query log line carries it.
func TestCarryTraceAndTags(t *testing.T) {
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	const parent = "00-" + tid + "-00f067aa0ba902b7-01"
	tagOpt := &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("env=prod,stage=canary")}
	for _, scheme := range []string{"udp", "https"} {
		t.Run(scheme, func(t *testing.T) {
			url, ca, seen := startCarryUpstream(t, scheme)
			doh, udp, logs := startCarryEdge(t, url, ca, "tags: {trusted: [\"127.0.0.0/8\"]}\n")
			m, h := dohPost(t, doh, carryQuery(tagOpt), map[string]string{"traceparent": parent})
			if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("answer %v", m)
			}
			if got := h.Get("X-DNS-TraceID"); got != tid {
				t.Errorf("X-DNS-TraceID %q, want %q", got, tid)
			}
			s := <-seen
			if s.traceOpt != tid || s.tagOpt != "env=prod,stage=canary" {
				t.Errorf("upstream options: trace %q tags %q", s.traceOpt, s.tagOpt)
			}
			if scheme == "https" {
				tp := s.header.Get("Traceparent")
				if s.header.Get("X-DNS-TraceID") != tid || !strings.HasPrefix(tp, "00-"+tid+"-") || !strings.HasSuffix(tp, "-01") || tp == parent {
					t.Errorf("upstream trace headers: X-DNS-TraceID %q traceparent %q", s.header.Get("X-DNS-TraceID"), tp)
				}
				if got := s.header.Values("X-DNS-Tag"); len(got) != 2 || got[0] != "env=prod" || got[1] != "stage=canary" {
					t.Errorf("upstream X-DNS-Tag %q", got)
				}
			}
			if !strings.Contains(logs.String(), `"trace_id":"`+tid+`"`) {
				t.Errorf("no query log line with the trace id:\n%s", logs.String())
			}
			// A query without trace gets an id of its own, sent upstream.
			c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
			if _, _, err := c.Exchange(carryQuery(), udp.String()); err != nil {
				t.Fatal(err)
			}
			s = <-seen
			if len(s.traceOpt) != 32 || s.traceOpt == tid || s.tagOpt != "" {
				t.Errorf("upstream options of a plain query: trace %q tags %q", s.traceOpt, s.tagOpt)
			}
		})
	}
}

// TestCarryUntrustedTags: a client not trusted for tags gets its tag
// option dropped.
func TestCarryUntrustedTags(t *testing.T) {
	url, _, seen := startCarryUpstream(t, "udp")
	_, udp, _ := startCarryEdge(t, url, "", "tags: {trusted: [\"10.0.0.0/8\"]}\n")
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	q := carryQuery(&dns.EDNS0_LOCAL{Code: 65001, Data: []byte("env=prod")})
	if _, _, err := c.Exchange(q, udp.String()); err != nil {
		t.Fatal(err)
	}
	if s := <-seen; s.tagOpt != "" {
		t.Errorf("untrusted tags forwarded: %q", s.tagOpt)
	}
}

// TestCarryECS: the subnet the upstream sees, as configured per listener.
// policyECS is a policy whose one rule takes the carry test's name and
// makes ecs its ECS decision.
func policyECS(ecs string) string {
	return fmt.Sprintf("policy:\n  version: \"1\"\n  rules:\n    - name: ecs\n      match: {qname_suffix: [%q]}\n      ecs: %s\n", carryName, ecs)
}

func TestCarryECS(t *testing.T) {
	clientECS := func() *dns.EDNS0_SUBNET {
		return &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(198, 51, 100, 0).To4()}
	}
	cases := []struct {
		name    string
		config  string
		doh     bool
		sent    bool // the client sends 198.51.100.0/24
		wantECS string
	}{
		{"udp passes by default", "", false, true, "198.51.100.0/24"},
		{"doh strips by default", "", true, true, ""},
		{"add from the source address", "ecs: {default: add}\n", false, false, "127.0.0.0/24"},
		{"add keeps the client's", "ecs: {default: add}\n", false, true, "198.51.100.0/24"},
		{"add with other bits on doh", "ecs: {doh: add, v4_bits: 16}\n", true, false, "127.0.0.0/16"},
		{"replace", "ecs: {default: replace}\n", false, true, "127.0.0.0/24"},
		{"strip", "ecs: {default: strip}\n", false, true, ""},
		// A policy rule decides before the defaults.
		{"policy replaces with its prefix", policyECS("{mode: replace, prefix: 203.0.113.0/24}"), false, true, "203.0.113.0/24"},
		{"policy adds on doh", policyECS("{mode: add, v4_bits: 20}"), true, false, "127.0.0.0/20"},
		{"policy strips on udp", policyECS("{mode: strip}"), false, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, _, seen := startCarryUpstream(t, "udp")
			doh, udp, _ := startCarryEdge(t, url, "", tc.config)
			var q *dns.Msg
			if tc.sent {
				q = carryQuery(clientECS())
			} else {
				q = carryQuery()
			}
			if tc.doh {
				dohPost(t, doh, q, nil)
			} else {
				c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
				if _, _, err := c.Exchange(q, udp.String()); err != nil {
					t.Fatal(err)
				}
			}
			if s := <-seen; s.ecs != tc.wantECS {
				t.Errorf("upstream saw ECS %q, want %q", s.ecs, tc.wantECS)
			}
		})
	}
}

// TestDnstapFile: with a dnstap file configured, a query over UDP is
// written as CLIENT_QUERY and CLIENT_RESPONSE, readable by golang-dnstap
// once the server has closed.
func TestDnstapFile(t *testing.T) {
	url, _, seen := startCarryUpstream(t, "udp")
	name := filepath.Join(t.TempDir(), "edge.tap")
	boot := transporttest.StartBootstrap(t, "dns.test. 300 IN A 127.0.0.1\n")
	cfg, err := edge.Parse("tap.yaml", []byte(fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: %q}
bootstrap: ["%s"]
dnstap: {file: %q, identity: edge-test}
`, url, boot.Addr(), name)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	if _, _, err := c.Exchange(carryQuery(), srv.Addrs()["udp"][0].String()); err != nil {
		t.Fatal(err)
	}
	<-seen
	srv.Close()
	in, err := dnstap.NewFrameStreamInputFromFilename(name)
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan []byte, 8)
	go func() { in.ReadInto(frames); close(frames) }()
	var got []string
	for f := range frames {
		var d dnstap.Dnstap
		if err := proto.Unmarshal(f, &d); err != nil {
			t.Fatal(err)
		}
		q := new(dns.Msg)
		if err := q.Unpack(d.GetMessage().QueryMessage); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", d.Identity, d.GetMessage().GetType(), d.GetMessage().GetSocketProtocol(), q.Question[0].Name))
	}
	want := "edge-test CLIENT_QUERY UDP " + carryName + "\nedge-test CLIENT_RESPONSE UDP " + carryName
	if strings.Join(got, "\n") != want {
		t.Errorf("dnstap file holds:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

// TestCarryJSONSubnet: the JSON API's edns_client_subnet reaches the
// upstream when the mode for DoH passes it, and not by default.
func TestCarryJSONSubnet(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{"", ""},
		{"ecs: {doh: pass}\n", "198.51.100.0/24"},
	} {
		url, _, seen := startCarryUpstream(t, "udp")
		doh, _, _ := startCarryEdge(t, url, "", tc.config)
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + doh.String() + "/dns-query?name=" + carryName + "&type=A&edns_client_subnet=198.51.100.0/24")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %s", resp.Status)
		}
		if s := <-seen; s.ecs != tc.want {
			t.Errorf("config %q: upstream saw ECS %q, want %q", tc.config, s.ecs, tc.want)
		}
	}
}

// TestCarryPolicyTags: the tags a policy rule sets reach a UDP upstream in
// the tag option and a DoH upstream as headers, after a trusted client's.
func TestCarryPolicyTags(t *testing.T) {
	rule := fmt.Sprintf("policy:\n  version: \"1\"\n  rules:\n    - name: canary\n      match: {qname_suffix: [%q]}\n      tags: [\"stage=canary\"]\n", carryName)
	for _, scheme := range []string{"udp", "https"} {
		t.Run(scheme, func(t *testing.T) {
			url, ca, seen := startCarryUpstream(t, scheme)
			_, udp, _ := startCarryEdge(t, url, ca, rule)
			c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
			if _, _, err := c.Exchange(carryQuery(), udp.String()); err != nil {
				t.Fatal(err)
			}
			s := <-seen
			if s.tagOpt != "stage=canary" {
				t.Errorf("tag option %q, want stage=canary", s.tagOpt)
			}
			if scheme == "https" && s.header.Get("X-DNS-Tag") != "stage=canary" {
				t.Errorf("X-DNS-Tag header %q, want stage=canary", s.header.Get("X-DNS-Tag"))
			}
		})
	}
}
