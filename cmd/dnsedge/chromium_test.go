package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// siteZone holds a name that only dnsedge can resolve, at an address
// nothing else listens on: a page loaded by that name proves the browser
// asked dnsedge.
const siteZone = `$ORIGIN dnsedge.test.
@     60 IN SOA ns hostmaster 1 3600 600 86400 30
site  60 IN A 127.0.0.77
`

// TestChromiumDoH points a real headless Chromium at dnsedge's DoH
// endpoint in secure mode (no fallback to the system resolver) and loads a
// page by a name only dnsedge knows. What each piece is for:
//
//   - The DoH template is an IP literal with {?dns}: a template with a
//     host name would need that name resolved some other way first, and
//     {?dns} makes Chromium use GET (without it, POST).
//   - Secure mode comes from the profile's "Local State" file, written
//     before Chromium starts, with --user-data-dir naming the profile. The
//     managed policy file (DnsOverHttpsMode, DnsOverHttpsTemplates) does
//     the same but needs root and /etc/chromium, and outlives the test;
//     the old --enable-features switches are ignored by current Chromium,
//     and "automatic" mode never sent the query.
//   - Chromium trusts certificates through NSS, not the system store: the
//     self-signed CA dnsedge printed goes into a fresh NSS database under
//     the HOME Chromium runs with. Without it the DoH handshake fails and
//     the page gets ERR_NAME_NOT_RESOLVED.
//   - The leaf covers IP:127.0.0.1 (the template's host) and has the
//     serverAuth usage; the CA is CA:TRUE with keyCertSign.
//   - --no-sandbox because tests run as root; --disable-background-
//     networking and friends stop Chromium's own lookups of Google hosts,
//     which would fail on a closed network.
//   - The name is not in /etc/hosts (which wins even in secure mode) and
//     is not "localhost" (never sent to DoH); the web server listens only
//     on 127.0.0.77, which only dnsedge's answer names.
func TestChromiumDoH(t *testing.T) {
	chromium, certutil := tool(t, "chromium"), tool(t, "certutil")
	up := transporttest.StartFault(t, siteZone)
	p := startServe(t, writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: doh, address: "127.0.0.1:0"}
tls:
  self_signed: true
  hosts: [127.0.0.1]
upstreams:
  - {name: up, url: "udp://%s"}
log:
  queries: true
`, up.AddrV4())))
	if p.ca == "" {
		t.Fatal("no self-signed CA in the start-up summary")
	}

	ln, err := net.Listen("tcp", "127.0.0.77:0")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "served-to-a-browser-that-asked-dnsedge"
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<!doctype html><html><body><p id=m>%s</p></body></html>", marker)
	}), ReadHeaderTimeout: 5 * time.Second}
	go web.Serve(ln)
	t.Cleanup(func() { web.Close() })
	_, webPort, _ := net.SplitHostPort(ln.Addr().String())

	home := t.TempDir()
	nssdb := "sql:" + filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(filepath.Join(home, ".pki", "nssdb"), 0o700); err != nil {
		t.Fatal(err)
	}
	dig(t, certutil, "-N", "-d", nssdb, "--empty-password")
	dig(t, certutil, "-A", "-d", nssdb, "-n", "dnsedge-test-ca", "-t", "C,,", "-i", p.ca)

	profile := t.TempDir()
	state, _ := json.Marshal(map[string]any{"dns_over_https": map[string]string{
		"mode":      "secure",
		"templates": "https://" + p.addr("doh") + "/dns-query{?dns}",
	}})
	if err := os.WriteFile(filepath.Join(profile, "Local State"), state, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
		"--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-default-apps", "--user-data-dir="+profile,
		"--virtual-time-budget=5000", "--dump-dom", "http://site.dnsedge.test:"+webPort+"/")
	cmd.Env = append(os.Environ(), "HOME="+home)
	out, err := cmd.Output()
	if err != nil && !strings.Contains(string(out), marker) {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), marker) {
		t.Fatalf("the page did not load by its name through dnsedge; chromium printed:\n%s\ndnsedge logged:\n%s", out, p.stderr.String())
	}
	found := false
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	for sc.Scan() {
		var e struct {
			Msg, Listener, Name, Type, Rcode string
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == "query" && e.Listener == "doh" &&
			e.Name == "site.dnsedge.test." && e.Type == "A" && e.Rcode == "NOERROR" {
			found = true
		}
	}
	if !found {
		t.Errorf("dnsedge's query log shows no DoH query for site.dnsedge.test A:\n%s", p.stderr.String())
	}
}
