package edge_test

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// freeTCPPort returns a loopback port nothing listens on right now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestReloadChangedListener: a reload that changes a listener's settings
// on the same address replaces the listener, and a reload that fails after
// that puts the old one back.
func TestReloadChangedListener(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	ca := transporttest.NewCA(t)
	certFile, keyFile := writeCert(t, t.TempDir(), ca)
	port := freeTCPPort(t)
	config := func(path, extra string) string {
		return fmt.Sprintf(`listeners:
  - {proto: doh, address: "127.0.0.1:%d", path: %s}
%stls: {cert_file: %q, key_file: %q}
upstreams:
  - {name: up, url: "udp://%s"}
`, port, path, extra, certFile, keyFile, up.AddrV4())
	}
	srv := startServer(t, config("/dns-query", ""))
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsTrusting(ca), ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()
	q := new(dns.Msg)
	q.SetQuestion("h1.test.example.", dns.TypeA)
	wire, _ := q.Pack()
	status := func(path string) int {
		client.CloseIdleConnections()
		resp, err := client.Get(fmt.Sprintf("https://localhost:%d%s?dns=%s", port, path, base64.RawURLEncoding.EncodeToString(wire)))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("/dns-query"); got != http.StatusOK {
		t.Fatalf("before reload: /dns-query answered %d", got)
	}

	reload := func(text string) error {
		t.Helper()
		cfg, err := parseConfig(text)
		if err != nil {
			t.Fatal(err)
		}
		return srv.Reload(cfg)
	}
	if err := reload(config("/q", "")); err != nil {
		t.Fatal(err)
	}
	if got, old := status("/q"), status("/dns-query"); got != http.StatusOK || old != http.StatusNotFound {
		t.Fatalf("after changing the path: /q answered %d, /dns-query %d; want 200 and 404", got, old)
	}

	// A second listener on a port someone else holds makes the reload
	// fail after the DoH listener was replaced: the old one comes back.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := config("/other", fmt.Sprintf("  - {proto: tcp, address: %q}\n", taken.Addr()))
	if err := reload(bad); err == nil {
		t.Fatal("a reload with a listener on a taken port succeeded")
	}
	if got := status("/q"); got != http.StatusOK {
		t.Fatalf("after a failed reload /q answered %d, want the listener restored", got)
	}
}

func tlsTrusting(ca *transporttest.CA) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}
}

func parseConfig(text string) (*edge.Config, error) { return edge.Parse("test.yaml", []byte(text)) }
