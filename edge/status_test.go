package edge_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestStatusAndHistograms: a miss then a hit show in the latency
// histograms under their sources, the path exchange histogram has the
// upstream's path, the info metrics name the build, the generation and
// the policy, and /status.json lists every path and the listener's
// rate, with the page's headers keeping it to its own origin.
func TestStatusAndHistograms(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, literalConfig(up, "metrics:\n  address: \"127.0.0.1:0\"\n"))
	c := &dns.Client{Timeout: 3 * time.Second}
	for range 2 { // a miss, then a hit
		if _, _, err := c.Exchange(ednsQuery("h1.test.example.", dns.TypeA), e.udp.String()); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + e.srv.MetricsAddr().String()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	_, metrics := get("/metrics")
	v4 := netip.MustParseAddrPort(up.AddrV4().String())
	for _, want := range []string{
		`dnsedge_query_duration_seconds_count{listener="udp",source="upstream"} 1`,
		`dnsedge_query_duration_seconds_count{listener="udp",source="cache"} 1`,
		`dnsedge_query_duration_seconds_count{listener="tcp",source="error"} 0`,
		fmt.Sprintf(`dnsedge_path_exchange_duration_seconds_count{address="%s",family="ipv4",proto="udp",upstream="v4"} `, v4),
		`dnsedge_build_info{goarch=`,
		`version="dev"} 1`,
		`dnsedge_generation_info{config_hash="`,
		`",generation="1"} 1`,
		`dnsedge_generation_loaded_timestamp_seconds `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	_, body := get("/status.json")
	var st edge.StatusBody
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Generation.Seq != 1 || st.Version != "dev" || st.Policy.Source != "none" {
		t.Errorf("generation %+v, version %q, policy %+v", st.Generation, st.Version, st.Policy)
	}
	seen := map[string]string{}
	for _, p := range st.Paths {
		seen[p.Name] = p.Breaker
	}
	// Two upstreams, each a UDP path and its TCP side.
	for _, name := range []string{"v4/udp/" + up.AddrV4().String(), "v4/tcp/" + up.AddrV4().String(), "v6/udp/" + up.AddrV6().String(), "v6/tcp/" + up.AddrV6().String()} {
		if seen[name] != "closed" {
			t.Errorf("path %s: %q in %v", name, seen[name], seen)
		}
	}
	if len(st.Listeners) == 0 || st.Listeners[0].Kind != "udp" || len(st.Listeners[0].Addresses) == 0 || st.Listeners[0].QPS <= 0 || st.Listeners[0].P99ms <= 0 {
		t.Errorf("listeners %+v", st.Listeners)
	}
	if st.Cache.Hits != 1 || st.Cache.Upstream != 1 || st.Cache.Ratio != 0.5 {
		t.Errorf("cache %+v", st.Cache)
	}
	if st.Canary != "none" || st.Rollback != "none" || st.Drills != "none" {
		t.Errorf("canary %v rollback %v drills %v, want none", st.Canary, st.Rollback, st.Drills)
	}

	tests := []struct {
		path, ctype string
	}{
		{"/status", "text/html; charset=utf-8"},
		{"/status/app.js", "text/javascript; charset=utf-8"},
		{"/status/app.css", "text/css; charset=utf-8"},
		{"/status.json", "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(tt.path)
			h := resp.Header
			if resp.StatusCode != 200 || h.Get("Content-Type") != tt.ctype || body == "" {
				t.Errorf("%d %q, %d bytes", resp.StatusCode, h.Get("Content-Type"), len(body))
			}
			csp := h.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %s", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "*") {
				t.Errorf("CSP %q allows inline or any origin", csp)
			}
			if h.Get("X-Frame-Options") != "DENY" || h.Get("Cross-Origin-Resource-Policy") != "same-origin" || h.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("headers %v", h)
			}
			if tt.path == "/status" && strings.Contains(body, "<script>") {
				t.Error("inline script in the page")
			}
		})
	}

	// A reload: the next generation, another configuration hash.
	hash := st.Generation.Hash
	if len(hash) != 12 {
		t.Errorf("config hash %q, want 12 hex digits", hash)
	}
	cfg, err := edge.Parse("test.yaml", []byte(testListeners+literalConfig(up, "metrics:\n  address: \"127.0.0.1:0\"\nlog:\n  queries: true\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	_, body = get("/status.json")
	st = edge.StatusBody{}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Generation.Seq != 2 || st.Generation.Hash == hash || len(st.Generation.Hash) != 12 {
		t.Errorf("after a reload: generation %+v, want number 2 and a hash other than %s", st.Generation, hash)
	}
	if _, metrics := get("/metrics"); !strings.Contains(metrics, `",generation="2"} 1`) {
		t.Error("/metrics does not show generation 2 after the reload")
	}

	// A stopped upstream: its path's breaker opens and its last error shows.
	up.Stop()
	for i := range 6 {
		c.Exchange(ednsQuery(fmt.Sprintf("down%d.test.example.", i), dns.TypeA), e.udp.String())
	}
	_, body = get("/status.json")
	st = edge.StatusBody{}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Paths {
		if p.Name == "v4/udp/"+up.AddrV4().String() && (p.Breaker != "open" || p.LastError == "" || p.LastErrorAt == "") {
			t.Errorf("stopped upstream's path: %+v", p)
		}
	}
}
