package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go/http3"

	"github.com/dnsedge/dnsedge/internal/doqclient"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// encryptedConfig serves DoT, DoH (HTTP/2 and HTTP/3) and DoQ on loopback
// with a self-signed certificate for dns.test and its subdomains, and
// logs every query.
func encryptedConfig(upstream string) string {
	return fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: dot, address: "127.0.0.1:0", server_name: dns.test}
  - {proto: doh, address: "127.0.0.1:0", http3: true}
  - {proto: doq, address: "127.0.0.1:0", server_name: dns.test}
tls:
  self_signed: true
  hosts: [dns.test, phone-7.dns.test, 127.0.0.1, "::1"]
upstreams:
  - {name: up, url: "udp://%s"}
log:
  level: info
  queries: true
`, upstream)
}

// trust returns a pool holding the CA file the server printed.
func trust(t *testing.T, p *proc) *x509.CertPool {
	t.Helper()
	if p.ca == "" {
		t.Fatal("no self-signed CA in the start-up summary")
	}
	pem, err := os.ReadFile(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", p.ca)
	}
	return pool
}

// TestEncryptedWithRealClients asks the binary over DoT and DoH with kdig,
// over the JSON API with curl, and over DoQ and DoH3 with quic-go
// clients, all verifying the self-signed certificate through the CA file
// the server printed.
func TestEncryptedWithRealClients(t *testing.T) {
	kdig, curl := tool(t, "kdig"), tool(t, "curl")
	up := transporttest.StartFault(t, zone)
	p := startServe(t, writeFile(t, "dnsedge.yaml", encryptedConfig(up.AddrV4().String())))
	pool := trust(t, p)
	dotH, dotPort := hostPort(p.addr("dot"))
	dohH, dohPort := hostPort(p.addr("doh"))
	tests := []struct {
		name string
		args []string
	}{
		// Android's Private DNS verifies the certificate against the host
		// name the user typed: +tls-hostname does the same.
		{"kdig DoT, host name verified", []string{"@" + dotH, "-p", dotPort, "+tls", "+tls-ca=" + p.ca, "+tls-hostname=dns.test"}},
		{"kdig DoT, client id in SNI", []string{"@" + dotH, "-p", dotPort, "+tls", "+tls-ca=" + p.ca, "+tls-hostname=phone-7.dns.test", "+tls-sni=phone-7.dns.test"}},
		{"kdig DoH POST", []string{"@" + dohH, "-p", dohPort, "+https", "+tls-ca=" + p.ca}},
		{"kdig DoH GET", []string{"@" + dohH, "-p", dohPort, "+https-get", "+tls-ca=" + p.ca}},
		{"kdig DoH with client id path", []string{"@" + dohH, "-p", dohPort, "+https=/dns-query/laptop-3", "+tls-ca=" + p.ca}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(tt.args, "+time=3", "+retry=0", "www.test.example", "A")
			out := dig(t, kdig, args...)
			if !strings.Contains(out, "NOERROR") || !strings.Contains(out, "192.0.2.10") {
				t.Fatalf("unexpected answer:\n%s", out)
			}
		})
	}
	waitFor(t, "client ids in the query log", func() bool {
		log := p.stderr.String()
		return strings.Contains(log, `"client_id":"phone-7"`) && strings.Contains(log, `"client_id":"laptop-3"`)
	})

	t.Run("curl JSON API", func(t *testing.T) {
		url := fmt.Sprintf("https://%s/dns-query?name=www.test.example&type=A", p.addr("doh"))
		out := dig(t, curl, "-sS", "--fail", "--cacert", p.ca, "-H", "accept: application/dns-json", url)
		var r struct {
			Status int
			Answer []struct {
				Name string `json:"name"`
				Type int    `json:"type"`
				Data string `json:"data"`
			}
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		if r.Status != 0 || len(r.Answer) != 1 || r.Answer[0].Data != "192.0.2.10" || r.Answer[0].Type != 1 {
			t.Fatalf("JSON answer %+v", r)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Run("DoQ", func(t *testing.T) {
		c, err := doqclient.Dial(ctx, p.addr("doq"), doqclient.Config{TLS: &tls.Config{RootCAs: pool, ServerName: "dns.test"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		q := new(dns.Msg)
		q.SetQuestion("www.test.example.", dns.TypeA)
		r, err := c.Exchange(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "192.0.2.10") {
			t.Fatalf("DoQ answer:\n%v", r)
		}
	})
	t.Run("DoH over HTTP/3", func(t *testing.T) {
		tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "dns.test"}}
		defer tr.Close()
		q := new(dns.Msg)
		q.SetQuestion("www.test.example.", dns.TypeA)
		wire, _ := q.Pack()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+p.addr("doh")+"/dns-query", bytes.NewReader(wire))
		req.Header.Set("Content-Type", "application/dns-message")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		r := new(dns.Msg)
		if resp.StatusCode != http.StatusOK || r.Unpack(body) != nil || len(r.Answer) != 1 {
			t.Fatalf("HTTP/3 status %d, body %q", resp.StatusCode, body)
		}
		if resp.ProtoMajor != 3 {
			t.Errorf("answered over %s", resp.Proto)
		}
	})
	for _, kind := range []string{"dot", "doh", "doq"} {
		if !strings.Contains(p.stderr.String(), `"listener":"`+kind+`"`) {
			t.Errorf("the query log shows no %s query", kind)
		}
	}
}

// TestDiagnoseEncrypted probes DoT, DoH and DoQ upstreams over their own
// protocols, verifying certificates as forwarding would: the trusted ones
// are ok, the one whose certificate no configured CA signed is broken.
func TestDiagnoseEncrypted(t *testing.T) {
	ca := transporttest.NewCA(t)
	dot := transporttest.StartDoT(t, transporttest.ServerConfig{CA: ca})
	doh := transporttest.StartDoH(t, transporttest.ServerConfig{CA: ca})
	doq := transporttest.StartDoQ(t, transporttest.ServerConfig{CA: ca})
	untrusted := transporttest.StartDoT(t, transporttest.ServerConfig{CA: transporttest.NewCA(t)})
	caFile := ca.WritePEM(t)
	path := writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
upstreams:
  - {name: dot, url: "tls://%s", ca_file: %q}
  - {name: doh, url: "https://%s/dns-query", ca_file: %q}
  - {name: doq, url: "quic://%s", ca_file: %q}
  - {name: untrusted, url: "tls://%s", ca_file: %q}
groups:
  - {name: default, upstreams: [dot, doh, doq, untrusted]}
`, dot.Addr(), caFile, doh.Addr(), caFile, doq.Addr(), caFile, untrusted.Addr(), caFile))
	out, err := exec.Command(dnsedgeBin, "diagnose", "-config", path, "-probes", "2", "-timeout", "2s").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want 1 (one path is broken)\n%s", err, out)
	}
	t.Logf("diagnose:\n%s", out)
	rows := make(map[string]string)
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 2 {
			rows[f[0]+" "+f[1]] = l
		}
	}
	for _, want := range []string{"dot tls", "doh https", "doq quic"} {
		if l := rows[want]; !strings.Contains(l, "2/2") || strings.Contains(l, "BROKEN") {
			t.Errorf("%s: %q, want 2/2 answered and not broken\n%s", want, l, out)
		}
	}
	if l := rows["untrusted tls"]; !strings.Contains(l, "BROKEN") || !strings.Contains(l, "0/2") {
		t.Errorf("untrusted: %q, want BROKEN with 0/2\n%s", l, out)
	}
}
