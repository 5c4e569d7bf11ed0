package edge_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
)

// policyUpstreams starts two upstreams that answer the same name
// differently, so that an answer tells which group it came through.
func policyUpstreams(t *testing.T) (base, canary *transporttest.Server) {
	t.Helper()
	zone := func(addr string) string {
		return fmt.Sprintf("$ORIGIN test.example.\n@ 60 IN SOA ns hostmaster 1 3600 600 86400 30\nwww 60 IN A %s\napi-v2 60 IN A %s\n", addr, addr)
	}
	return transporttest.StartFault(t, zone("192.0.2.1")), transporttest.StartFault(t, zone("192.0.2.2"))
}

func policyGroups(base, canary *transporttest.Server) string {
	return fmt.Sprintf(`upstreams:
  - {name: base, url: "udp://%s"}
  - {name: canary, url: "udp://%s"}
groups:
  - {name: default, upstreams: [base]}
  - {name: canary, upstreams: [canary]}
log: {queries: true}
metrics: {address: "127.0.0.1:0"}
`, base.AddrV4(), canary.AddrV4())
}

const policyRules = `  version: "v1"
  rules:
    - name: api-canary
      match: {qname_prefix: ["api-v2."]}
      route: canary
    - name: vip
      match: {source: [127.0.0.2/32]}
      route: canary
    - name: blocked
      match: {qname_suffix: [blocked.example]}
      answer: {rcode: NXDOMAIN}
    - name: fixed
      match: {qname_suffix: [fixed.example]}
      answer: {records: ["fixed.example. 60 IN A 192.0.2.99"]}
`

// TestPolicyRoutesAndAnswers: rules route to a group by name prefix and by
// source, and answer locally; the query log names the rule and the
// version, and the version is a metric.
func TestPolicyRoutesAndAnswers(t *testing.T) {
	base, canary := policyUpstreams(t)
	e := startEdge(t, policyGroups(base, canary)+"policy:\n"+policyRules)
	ask := func(from, name string) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		laddr := &net.UDPAddr{IP: net.ParseIP(from)}
		c := &dns.Client{Net: "udp", Timeout: 3 * time.Second, Dialer: &net.Dialer{LocalAddr: laddr}}
		m, _, err := c.Exchange(q, e.udp.String())
		if err != nil {
			t.Fatalf("%s from %s: %v", name, from, err)
		}
		return m
	}
	a := func(m *dns.Msg) string {
		if len(m.Answer) != 1 {
			return fmt.Sprintf("%s with %d answers", dns.RcodeToString[m.Rcode], len(m.Answer))
		}
		return m.Answer[0].(*dns.A).A.String()
	}
	for _, c := range []struct{ from, name, want string }{
		{"127.0.0.1", "www.test.example.", "192.0.2.1"},    // no rule: the default group
		{"127.0.0.1", "api-v2.test.example.", "192.0.2.2"}, // by name prefix
		{"127.0.0.2", "www.test.example.", "192.0.2.2"},    // by source
		{"127.0.0.1", "fixed.example.", "192.0.2.99"},      // a fixed record
	} {
		if got := a(ask(c.from, c.name)); got != c.want {
			t.Errorf("%s from %s: %s, want %s", c.name, c.from, got, c.want)
		}
	}
	if m := ask("127.0.0.1", "ads.blocked.example."); m.Rcode != dns.RcodeNameError || len(m.Answer) != 0 {
		t.Errorf("blocked name: %s with %d answers, want NXDOMAIN", dns.RcodeToString[m.Rcode], len(m.Answer))
	}
	logs := e.logs.String()
	for _, want := range []string{`"rule":"api-canary"`, `"rule":"vip"`, `"rule":"blocked"`, `"policy_version":"v1"`, `"source":"policy"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("query log lacks %s", want)
		}
	}
	resp, err := http.Get("http://" + e.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `dnsedge_policy_info{version="v1"} 1`) || !strings.Contains(string(body), "dnsedge_policy_rules 4") {
		t.Errorf("metrics lack the policy's version and rules:\n%s", grepLines(string(body), "dnsedge_policy"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPolicyFileReload: a policy of its own file, relative to the
// configuration file; a reload applies its new version.
func TestPolicyFileReload(t *testing.T) {
	base, canary := policyUpstreams(t)
	dir := t.TempDir()
	pfile := filepath.Join(dir, "policy.yaml")
	write := func(version, route string) {
		t.Helper()
		text := fmt.Sprintf("version: %q\nrules:\n  - name: www\n    match: {qname_prefix: [\"www.\"]}\n    route: %s\n", version, route)
		if err := os.WriteFile(pfile, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgText := testListeners + policyGroups(base, canary) + "policy_file: policy.yaml\n"
	load := func() *edge.Config {
		t.Helper()
		cfg, err := edge.Parse(filepath.Join(dir, "dnsedge.yaml"), []byte(cfgText))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	write("v1", "default")
	e := startEdge(t, policyGroups(base, canary)+"policy_file: "+pfile+"\n")
	www := func() string {
		t.Helper()
		m, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(ednsQuery("www.test.example.", dns.TypeA), e.udp.String())
		if err != nil || len(m.Answer) != 1 {
			t.Fatalf("www: %v %v", m, err)
		}
		return m.Answer[0].(*dns.A).A.String()
	}
	if got := www(); got != "192.0.2.1" {
		t.Fatalf("policy v1: %s", got)
	}
	write("v2", "canary")
	if err := e.srv.Reload(load()); err != nil {
		t.Fatal(err)
	}
	if got := www(); got != "192.0.2.2" {
		t.Fatalf("policy v2 routes www to canary, got %s", got)
	}
	if !strings.Contains(e.logs.String(), `"policy_version":"v2"`) {
		t.Error("query log lacks the new version")
	}
	write("v3", "nowhere")
	if _, err := edge.Parse(filepath.Join(dir, "dnsedge.yaml"), []byte(cfgText)); err == nil || !strings.Contains(err.Error(), `"nowhere"`) {
		t.Fatalf("a policy routing to an unknown group: %v", err)
	}
}
