package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// dashboardFile is the Grafana dashboard shipped in deploy/.
const dashboardFile = "../../deploy/grafana/dnsedge.json"

// eventMetrics are metrics the dashboard shows that dnsedge exports
// only once something happened (a rollback, a drill running) or that
// other parts of dnsedge export (the rollback watch, the drills): they
// need not be in the scrape. Their panels add "or on() vector(0)", so
// that their queries return a series all the same, and are checked like
// the others.
var eventMetrics = []string{"dnsedge_rollbacks_total", "dnsedge_drill_active"}

type dashboardExpr struct{ panel, expr string }

// metricName matches the dnsedge metric names an expression uses.
var metricName = regexp.MustCompile(`\bdnsedge_[a-z0-9_]+`)

// loadDashboard reads the dashboard and checks its form: a datasource
// variable of type prometheus that every panel and query uses, and
// $__rate_interval as the range of every range vector. It returns every
// panel's expressions.
func loadDashboard(t *testing.T) []dashboardExpr {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type datasource struct{ Type, UID string }
	var d struct {
		Title      string
		UID        string
		Templating struct {
			List []struct{ Name, Type, Query string }
		}
		Panels []struct {
			Type       string
			Title      string
			Datasource *datasource
			Targets    []struct {
				Datasource *datasource
				Expr       string
			}
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard without title or uid")
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct{ Name, Type, Query string }) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Errorf("no datasource variable of type prometheus: %+v", d.Templating.List)
	}
	usesVar := func(ds *datasource) bool { return ds != nil && ds.Type == "prometheus" && ds.UID == "${datasource}" }
	rng := regexp.MustCompile(`\[[^\]]*\]`)
	var out []dashboardExpr
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if !usesVar(p.Datasource) || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d queries", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			if !usesVar(tg.Datasource) || tg.Expr == "" {
				t.Errorf("panel %q: query %q with datasource %+v", p.Title, tg.Expr, tg.Datasource)
			}
			for _, r := range rng.FindAllString(tg.Expr, -1) {
				if r != "[$__rate_interval]" {
					t.Errorf("panel %q: range %s, want [$__rate_interval]", p.Title, r)
				}
			}
			out = append(out, dashboardExpr{p.Title, tg.Expr})
		}
	}
	return out
}

// TestGrafanaDashboard checks the dashboard's form and names the metrics
// it shows.
func TestGrafanaDashboard(t *testing.T) {
	exprs := loadDashboard(t)
	names := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e.expr, -1) {
			names[n] = true
		}
	}
	for _, want := range []string{
		"dnsedge_listener_queries_total", "dnsedge_query_duration_seconds_bucket", "dnsedge_query_duration_seconds_count",
		"dnsedge_cache_hits_total", "dnsedge_path_srtt_seconds", "dnsedge_path_loss_ratio", "dnsedge_path_breaker_state",
		"dnsedge_path_exchange_duration_seconds_bucket", "dnsedge_rollbacks_total", "dnsedge_drill_active",
		"dnsedge_build_info", "dnsedge_policy_info", "dnsedge_generation_info",
	} {
		if !names[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// TestDashboardPrometheus runs Debian's prometheus on loopback, scraping
// a dnsedge under a bounded load, and asks it every panel's expression
// ($__rate_interval as 1m): each must return at least one series. Every
// metric the dashboard names must be one dnsedge exports.
func TestDashboardPrometheus(t *testing.T) {
	promBin := tool(t, "prometheus")
	exprs := loadDashboard(t)
	up := transporttest.StartFault(t, zone)
	p := startServe(t, writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: "udp://%s"}
metrics:
  address: "127.0.0.1:0"
policy:                      # so that dnsedge_policy_info is exported
  version: "dash-1"
  rules:
    - {name: no-ads, match: {qname_suffix: [ads.example]}, answer: {rcode: NXDOMAIN}}
`, up.AddrV4())))
	metricsAddr := p.addr("metrics")
	if metricsAddr == "" {
		t.Fatal("no metrics address in the start-up summary")
	}

	dir := t.TempDir()
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeFile(t, "prometheus.yml", fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dnsedge
    static_configs:
      - targets: ["%s"]
`, metricsAddr))
	cmd := exec.Command(promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	api := "http://" + promAddr
	pollFor(t, 20*time.Second, "prometheus ready", func() bool {
		resp, err := http.Get(api + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, &logs)

	// A bounded load: at most 600 queries in at most 6 s, over UDP and
	// TCP, half of them repeats (cache hits), half new names (misses).
	deadline := time.Now().Add(6 * time.Second)
	for i := 0; i < 600 && time.Now().Before(deadline); i++ {
		proto := []string{"udp", "tcp"}[i%2]
		name := "www.test.example."
		if i%4 >= 2 {
			name = fmt.Sprintf("miss%d.test.example.", i)
		}
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		c := &dns.Client{Net: proto, Timeout: 2 * time.Second}
		if _, _, err := c.Exchange(q, p.addr(proto)); err != nil {
			t.Fatalf("query %d over %s: %v", i, proto, err)
		}
		time.Sleep(8 * time.Millisecond)
	}
	// Enough scrapes for rate() over 1m: at least 4 of them with the load.
	pollFor(t, 20*time.Second, "4 scrapes of dnsedge", func() bool {
		res, _ := promQuery(api, `count_over_time(dnsedge_listener_queries_total{listener="udp"}[1m])`)
		if len(res) == 0 || len(res[0].Value) != 2 {
			return false
		}
		n, _ := strconv.ParseFloat(fmt.Sprint(res[0].Value[1]), 64)
		return n >= 4
	}, &logs)

	exported := scrape(t, "http://"+metricsAddr+"/metrics")
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e.expr, -1) {
			if !exported[n] && !slices.Contains(eventMetrics, n) {
				t.Errorf("panel %q names %s, which dnsedge does not export", e.panel, n)
			}
		}
		expr := strings.ReplaceAll(e.expr, "$__rate_interval", "1m")
		res, err := promQuery(api, expr)
		if err != nil {
			t.Errorf("panel %q: %s: %v", e.panel, expr, err)
		} else if len(res) == 0 {
			t.Errorf("panel %q: %s returns no series", e.panel, expr)
		}
	}
	for _, n := range eventMetrics {
		t.Logf("%s exported: %v (not required)", n, exported[n])
	}
}

type promSeries struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
}

// promQuery runs an instant query through Prometheus's HTTP API.
func promQuery(api, expr string) ([]promSeries, error) {
	resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSeries `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.Status, r.Error)
	}
	return r.Data.Result, nil
}

// scrape returns the names of the metrics an exposition lists, histogram
// series (_bucket, _sum, _count) included.
func scrape(t *testing.T, u string) map[string]bool {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// pollFor polls cond every 100 ms until it holds or d passes; logs are
// printed with the failure.
func pollFor(t *testing.T, d time.Duration, what string, cond func() bool, logs fmt.Stringer) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s\n%s", what, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
