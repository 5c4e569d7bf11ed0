package edge_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/edge/records/recordstest"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// apiToken is the bearer token of the records API tests.
const apiToken = "s3cret-token"

func apiConfig(t *testing.T, up *transporttest.Server) string {
	return apiConfigIn(up, t.TempDir(), "")
}

// apiConfigIn is a configuration with the API zone dyn.test. (and the
// zones of extra, YAML list items) kept under stateDir.
func apiConfigIn(up *transporttest.Server, stateDir, extra string) string {
	sum := sha256.Sum256([]byte(apiToken))
	return fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
state_dir: %q
zones:
  - {origin: dyn.test., api: true}
  - {origin: static.test., records: ["www 60 IN A 10.9.9.9"]}
%sadmin:
  address: "127.0.0.1:0"
  tokens:
    - {id: ci, sha256: %s, zones: ["*"], access: write}
`, up.AddrV4(), stateDir, extra, hex.EncodeToString(sum[:]))
}

// apiClient is a client of the admin listener at addr with the test
// token, checking every exchange against the served OpenAPI document.
func apiClient(t *testing.T, addr string) *recordstest.Client {
	t.Helper()
	c := recordstest.New(t, "http://"+addr, nil)
	c.Header["Authorization"] = "Bearer " + apiToken
	return c
}

// apiPatch sends a PATCH to the admin listener at addr and returns the
// status and body.
func apiPatch(t *testing.T, addr, zone, body string) (int, string) {
	t.Helper()
	r := apiClient(t, addr).Patch(zone, body, nil)
	return r.Status, string(r.Body)
}

func askA(t *testing.T, e *testEdge, name string) string {
	t.Helper()
	c := &dns.Client{Timeout: 2 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	m, _, err := c.Exchange(q, e.udp.String())
	if err != nil {
		t.Fatal(err)
	}
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		return dns.RcodeToString[m.Rcode]
	}
	return m.Answer[0].(*dns.A).A.String()
}

// TestRecordsAPIAcrossReloads: a reload that adds an API zone keeps the
// admin listener and what the zones hold, and serves the new zone; a
// reload that drops the admin section closes the listener while the zone
// keeps answering what it held.
func TestRecordsAPIAcrossReloads(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	dir := t.TempDir()
	e := startEdge(t, apiConfigIn(up, dir, ""))
	addr := e.srv.AdminAddr().String()
	if st, b := apiPatch(t, addr, "dyn.test.", `{"rrsets":[{"name":"a.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.1.1.1"}]}]}`); st != 200 {
		t.Fatalf("PATCH: %d %s", st, b)
	}
	cfg, err := edge.Parse("test.yaml", []byte(testListeners+apiConfigIn(up, dir, "  - {origin: more.test., api: true}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.AdminAddr().String(); got != addr {
		t.Fatalf("admin listener moved from %s to %s over a reload", addr, got)
	}
	if got := askA(t, e, "a.dyn.test."); got != "10.1.1.1" {
		t.Fatalf("after the reload a.dyn.test. is %s", got)
	}
	if st, b := apiPatch(t, addr, "more.test", `{"rrsets":[{"name":"b.more.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.2.2.2"}]}]}`); st != 200 {
		t.Fatalf("PATCH the new zone: %d %s", st, b)
	}
	if st, b := apiPatch(t, addr, "dyn.test", `{"rrsets":[{"name":"a.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.1.1.2"}]}]}`); st != 200 {
		t.Fatalf("PATCH after the reload: %d %s", st, b)
	}
	if got := askA(t, e, "b.more.test."); got != "10.2.2.2" {
		t.Fatalf("b.more.test. is %s", got)
	}
	if got := askA(t, e, "a.dyn.test."); got != "10.1.1.2" {
		t.Fatalf("a.dyn.test. after a change made after the reload is %s", got)
	}
	noAdmin := strings.Split(apiConfigIn(up, dir, ""), "admin:")[0]
	noAdmin = strings.Replace(noAdmin, "  - {origin: dyn.test., api: true}\n", "", 1)
	cfg, err = edge.Parse("test.yaml", []byte(testListeners+noAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if a := e.srv.AdminAddr(); a != nil {
		t.Fatalf("admin listener %s still open without an admin section", a)
	}
	if resp, err := http.Get("http://" + addr + "/api/v1/openapi.json"); err == nil {
		resp.Body.Close()
		t.Fatal("the admin address still answers")
	}
}

// TestRecordsAPIAnsweredAtOnce: a record PATCHed through the admin
// listener is answered by the very next DNS query, authoritatively, and
// GET shows it with the new serial as ETag.
func TestRecordsAPIAnsweredAtOnce(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, apiConfig(t, up)+"metrics: {address: \"127.0.0.1:0\"}\n")
	api := apiClient(t, e.srv.AdminAddr().String())
	for i := range 5 {
		ip := fmt.Sprintf("10.0.0.%d", i+1)
		body := fmt.Sprintf(`{"rrsets":[{"name":"www.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":%q}]}]}`, ip)
		r := api.Patch("dyn.test.", body, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("PATCH %d: %d %s", i, r.Status, r.Body)
		}
		if want := fmt.Sprintf(`"%d"`, i+2); r.ETag() != want {
			t.Fatalf("PATCH %d: ETag %s, want %s", i, r.ETag(), want)
		}
		c := &dns.Client{Timeout: 2 * time.Second}
		q := new(dns.Msg)
		q.SetQuestion("www.dyn.test.", dns.TypeA)
		m, _, err := c.Exchange(q, e.udp.String())
		if err != nil || len(m.Answer) != 1 || !m.Authoritative || m.Answer[0].(*dns.A).A.String() != ip {
			t.Fatalf("query right after PATCH %d: %v %v, want %s", i, m, err, ip)
		}
	}
	resp, err := http.Get("http://" + e.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"dnsedge_records_changes_total 5\n", `dnsedge_records_zone_serial{zone="dyn.test."} 6` + "\n", "dnsedge_records_commit_errors_total 0\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestRecordsAPIClientCertificate: over an HTTPS admin listener, a client
// certificate of the configured client CA whose common name is a client
// id acts with that client's grant; no certificate and no token is 401; a
// certificate of another CA gets no further than the handshake.
func TestRecordsAPIClientCertificate(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	server, clients, stranger := transporttest.NewCA(t), transporttest.NewCA(t), transporttest.NewCA(t)
	certFile, keyFile := writeCert(t, t.TempDir(), server)
	e := startEdge(t, fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
state_dir: %q
zones:
  - {origin: dyn.test., api: true}
admin:
  address: "127.0.0.1:0"
  tls: {cert_file: %q, key_file: %q, client_auth: request, client_ca: %q}
  clients:
    - {id: %q, zones: [dyn.test.], access: write}
`, up.AddrV4(), t.TempDir(), certFile, keyFile, clients.WritePEM(t), transporttest.TestServerName))
	base := "https://" + e.srv.AdminAddr().String()
	body := `{"rrsets":[{"name":"m.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.3.3.3"}]}]}`
	tests := []struct {
		name   string
		cert   []tls.Certificate
		status int // 0: the request fails
	}{
		{"no certificate", nil, http.StatusUnauthorized},
		{"certificate of another CA", []tls.Certificate{stranger.Leaf}, 0},
		{"certificate of a configured client", []tls.Certificate{clients.Leaf}, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: server.Pool, Certificates: tc.cert}}}
			defer c.CloseIdleConnections()
			if tc.status == 0 {
				req, _ := http.NewRequest(http.MethodPatch, base+"/api/v1/zones/dyn.test.", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got %s, want a failed handshake", resp.Status)
				}
				return
			}
			r := recordstest.New(t, base, c).Patch("dyn.test.", body, nil)
			if r.Status != tc.status {
				t.Fatalf("got %d %s, want %d", r.Status, r.Body, tc.status)
			}
		})
	}
	if got := askA(t, e, "m.dyn.test."); got != "10.3.3.3" {
		t.Fatalf("m.dyn.test. is %s after the change made with a client certificate", got)
	}
}

// TestRecordsCloseLeavesNoGoroutines: a server with the admin and webhook
// listeners that changed an API zone and reloaded leaves nothing of
// itself running after Close.
func TestRecordsCloseLeavesNoGoroutines(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	config := testListeners + apiConfigIn(up, t.TempDir(), "") + "records:\n  webhook: {address: \"127.0.0.1:0\", grant: ci}\n"
	cfg, err := edge.Parse("leak.yaml", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := edge.New(cfg, edge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if st, b := apiPatch(t, srv.AdminAddr().String(), "dyn.test.", `{"rrsets":[{"name":"a.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.1.1.1"}]}]}`); st != 200 {
		t.Fatalf("PATCH: %d %s", st, b)
	}
	wh := recordstest.NewWebhook(t, "http://"+srv.WebhookAddr().String())
	if r := wh.Do(http.MethodGet, "/records", nil, ""); r.Status != 200 || !strings.Contains(string(r.Body), `"dnsName":"a.dyn.test"`) {
		t.Fatalf("webhook GET /records: %d %s", r.Status, r.Body)
	}
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := ourGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
