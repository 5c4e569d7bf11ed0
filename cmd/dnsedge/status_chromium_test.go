package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// statusRefresh is how often the /status page fetches /status.json
// (REFRESH in edge/statuspage/app.js).
const statusRefresh = 2 * time.Second

// TestStatusPageChromium loads /status in a real headless Chromium, driven
// over the DevTools protocol: every path of both upstreams is listed; once
// one upstream stops and its path's breaker opens, the page shows it open
// within two refreshes; the page's responses carry the CSP, and a page of
// another origin cannot read /status.json. A screenshot of the page is
// saved in $DNSEDGE_ARTIFACTS when set, else in the test's temporary
// directory (the path is logged).
func TestStatusPageChromium(t *testing.T) {
	chromium := tool(t, "chromium")
	a, b := transporttest.StartFault(t, zone), transporttest.StartFault(t, zone)
	// b first: queries try it first, so its failures open its breaker.
	p := startServe(t, writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
upstreams:
  - {name: b, url: "udp://%s"}
  - {name: a, url: "udp://%s"}
health:
  failure_threshold: 2
  cooldown: 30s
  max_cooldown: 60s
metrics:
  address: "127.0.0.1:0"
`, b.AddrV4(), a.AddrV4())))
	status := "http://" + p.addr("metrics") + "/status"
	paths := []string{
		"b/udp/" + b.AddrV4().String(), "b/tcp/" + b.AddrV4().String(),
		"a/udp/" + a.AddrV4().String(), "a/tcp/" + a.AddrV4().String(),
	}

	resp, err := http.Get(status)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") ||
		!strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP of /status: %q", csp)
	}
	if acao := resp.Header.Get("Access-Control-Allow-Origin"); acao != "" {
		t.Errorf("/status allows origin %q", acao)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	page, err := chromedp.Run(bctx, chromedp.NavigateResponse(status))
	if err != nil {
		t.Fatalf("load %s: %v", status, err)
	}
	// The headers as the browser got them.
	if csp := fmt.Sprint(page.Headers["Content-Security-Policy"]); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("the browser got /status with CSP %q", csp)
	}
	type row struct{ Path, Breaker string }
	var rows []row
	var refreshes int
	// read takes the rows and the refresh count in one evaluation, so
	// that no refresh falls between them.
	read := func() {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[struct {
			Rows      []row
			Refreshes int
		}](`({Rows: [...document.querySelectorAll("#paths tbody tr")].map(r => ({Path: r.dataset.path, Breaker: r.dataset.breaker})),
		     Refreshes: Number(document.getElementById("refreshed").dataset.refreshes)})`))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		rows, refreshes = v.Rows, v.Refreshes
	}
	breakerOf := func(path string) string {
		for _, r := range rows {
			if r.Path == path {
				return r.Breaker
			}
		}
		return ""
	}
	poll := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		end := time.Now().Add(d)
		for read(); !cond(); read() {
			if time.Now().After(end) {
				t.Fatalf("%s: not within %v; rows %+v after %d refreshes", what, d, rows, refreshes)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	poll("every path listed", 10*time.Second, func() bool {
		return refreshes >= 1 && !slices.ContainsFunc(paths, func(p string) bool { return breakerOf(p) != "closed" })
	})
	if len(rows) != len(paths) {
		t.Errorf("rows %+v, want the %d paths %v", rows, len(paths), paths)
	}

	// Stop b and query until its UDP path's breaker is open in dnsedge;
	// a answers meanwhile.
	b.Stop()
	c := &dns.Client{Timeout: 3 * time.Second}
	for i := range 4 {
		q := new(dns.Msg)
		q.SetQuestion(fmt.Sprintf("down%d.test.example.", i), dns.TypeA)
		c.Exchange(q, p.addr("udp"))
	}
	pollFor(t, 10*time.Second, "b's path open in dnsedge", func() bool {
		resp, err := http.Get(status + ".json")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			Paths []struct{ Name, Breaker string }
		}
		json.NewDecoder(resp.Body).Decode(&st)
		return slices.ContainsFunc(st.Paths, func(p struct{ Name, Breaker string }) bool {
			return p.Name == paths[0] && p.Breaker == "open"
		})
	}, &strings.Builder{})
	read()
	before := refreshes
	// Two refreshes take 2×statusRefresh and the fetches; the bound on
	// the count below is the assertion, the time is only a backstop.
	poll("b's path shown open", 5*statusRefresh, func() bool { return breakerOf(paths[0]) == "open" })
	if refreshes-before > 2 {
		t.Errorf("b's path shown open after %d refreshes, want at most 2", refreshes-before)
	}
	if got := breakerOf(paths[2]); got != "closed" {
		t.Errorf("a's UDP path: %s, want closed", got)
	}

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("DNSEDGE_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "status.png")
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of /status: %s", file)

	// Another origin (another port is another origin) may not read
	// /status.json: no CORS header, so its fetch fails.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	other := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><body><p id=r>pending</p></body></html>`)
	}), ReadHeaderTimeout: 5 * time.Second}
	go other.Serve(ln)
	t.Cleanup(func() { other.Close() })
	if _, err := chromedp.Run(bctx, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
		t.Fatalf("load the other origin's page: %v", err)
	}
	result, err := chromedp.Run(bctx, chromedp.Evaluate[string](fmt.Sprintf(
		`fetch(%q).then(r => r.text()).then(t => "read: " + t.slice(0, 40), e => "refused: " + e.name)`,
		"http://"+p.addr("metrics")+"/status.json"), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("cross-origin fetch: %v", err)
	}
	if !strings.HasPrefix(result, "refused: TypeError") {
		t.Errorf("a page of another origin fetching /status.json: %q, want refused", result)
	}
}
