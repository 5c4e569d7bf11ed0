package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go/http3"

	"github.com/dnsedge/dnsedge/internal/doqclient"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// Timeline of TestUpgradeQUICHandOver: the old process exits (end of its
// watch window) while the DoQ load goes on.
const (
	quicHandOverLoad  = 14 * time.Second
	quicHandOverAt    = 4 * time.Second
	quicHandOverWatch = 4 * time.Second
	quicHandOverDrain = 3 * time.Second
)

// TestUpgradeQUICHandOver upgrades dnsedge under DoQ load and lets the
// old process exit before the load ends. New DoQ and HTTP/3 connections
// are answered by the new process within a second of `dnsedge upgrade`
// returning (the old one forwards their packets to it), the old one's
// connections are served until it exits, and a client that opens its
// connection again when the old process closes it loses no query.
func TestUpgradeQUICHandOver(t *testing.T) {
	var zoneText, queries strings.Builder
	zoneText.WriteString("$ORIGIN test.example.\n@ 300 IN SOA ns hostmaster 1 3600 600 86400 300\n")
	for i := range 2000 {
		fmt.Fprintf(&zoneText, "h%d 300 IN A 192.0.2.%d\n", i, i%250+1)
		fmt.Fprintf(&queries, "h%d.test.example A\n", i)
	}
	up := transporttest.StartFault(t, zoneText.String())
	dir := t.TempDir()
	bin := filepath.Join(dir, "dnsedge")
	quicload := filepath.Join(dir, "quicload")
	if out, err := exec.Command("go", "build", "-o", quicload, "../../bench/quicload").CombinedOutput(); err != nil {
		t.Fatalf("build quicload: %v\n%s", err, out)
	}
	buildVersioned(t, bin, "quic-handover-1")
	qfile := writeFile(t, "queries.txt", queries.String())
	doqPort, dohPort := freePortBoth(t), freePortBoth(t)
	sock := tempSocket(t)
	path := writeFile(t, "dnsedge.yaml", fmt.Sprintf(`listeners:
  - {proto: doq, address: "127.0.0.1:%d", server_name: dns.test}
  - {proto: doh, address: "127.0.0.1:%d", http3: true}
tls:
  self_signed: true
  hosts: [dns.test, 127.0.0.1]
upstreams:
  - {name: up, url: "udp://%s"}
upgrade: {control: %q, drain: %s, watch: %s, ready_timeout: 20s}
log: {level: info}
`, doqPort, dohPort, up.AddrV4(), sock, quicHandOverDrain, quicHandOverWatch))
	p, oldExited := startBin(t, bin, path)
	if p.ca == "" {
		t.Fatal("no self-signed CA in the start-up summary")
	}
	pem, err := os.ReadFile(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := &tls.Config{ServerName: "dns.test", RootCAs: poolOf(pem)}
	doqAddr := fmt.Sprintf("127.0.0.1:%d", doqPort)
	h3URL := fmt.Sprintf("https://127.0.0.1:%d/dns-query", dohPort)
	if v, err := doqVersion(doqAddr, tlsConf); err != nil || v != "quic-handover-1" {
		t.Fatalf("doq before the upgrade: %q, %v", v, err)
	}
	if v, err := h3Version(h3URL, tlsConf); err != nil || v != "quic-handover-1" {
		t.Fatalf("http/3 before the upgrade: %q, %v", v, err)
	}
	buildVersioned(t, bin, "quic-handover-2")

	var out strings.Builder
	cmd := exec.Command(quicload, "-mode", "doq", "-addr", doqAddr, "-ca", p.ca, "-names", qfile,
		"-c", "4", "-q", "8", "-rate", "400", "-d", quicHandOverLoad.String(), "-t", "5s", "-reconnect", "-v")
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	loadDone := make(chan struct{})
	go func() { cmd.Wait(); close(loadDone) }()
	defer func() {
		cmd.Process.Kill()
		<-loadDone
	}()

	sleepUntil(start.Add(quicHandOverAt))
	code, upOut := runUpgrade(t, bin, sock)
	upgraded := time.Now()
	if code != 0 {
		t.Fatalf("upgrade: exit %d, output:\n%s\nlog:\n%s", code, upOut, &p.stderr)
	}
	for _, c := range []struct {
		name string
		ask  func() (string, error)
	}{
		{"doq", func() (string, error) { return doqVersion(doqAddr, tlsConf) }},
		{"http/3", func() (string, error) { return h3Version(h3URL, tlsConf) }},
	} {
		for {
			v, err := c.ask()
			if v == "quic-handover-2" {
				t.Logf("new %s connection answered by the new process %v after the upgrade", c.name, time.Since(upgraded).Round(time.Millisecond))
				break
			}
			if time.Since(upgraded) > time.Second {
				t.Fatalf("new %s connections not on the new process within 1s: %q, %v\nlog:\n%s", c.name, v, err, &p.stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	select {
	case <-oldExited:
		t.Logf("old process gone %v after the upgrade", time.Since(upgraded).Round(100*time.Millisecond))
	case <-time.After(time.Until(start.Add(quicHandOverLoad - time.Second))):
		t.Fatalf("old process still there %v after the upgrade, the load ends soon", time.Since(upgraded).Round(100*time.Millisecond))
	}
	select {
	case <-loadDone:
	case <-time.After(time.Until(start.Add(quicHandOverLoad + 15*time.Second))):
		t.Fatal("quicload did not end")
	}
	text := out.String()
	m := quicLoadL.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("doq: no summary:\n%s", text)
	}
	sent, _ := strconv.Atoi(m[1])
	lost, _ := strconv.Atoi(m[3])
	t.Logf("doq: %s", strings.TrimSpace(text))
	if lost != 0 || sent < 1000 {
		t.Errorf("doq: %d sent, %d lost across the old process's exit:\n%s\nlog:\n%s", sent, lost, text, &p.stderr)
	}
	// Still the new process, on new connections, after the old one left.
	if v, err := doqVersion(doqAddr, tlsConf); err != nil || v != "quic-handover-2" {
		t.Errorf("doq after the old process exited: %q, %v", v, err)
	}
	if v, err := h3Version(h3URL, tlsConf); err != nil || v != "quic-handover-2" {
		t.Errorf("http/3 after the old process exited: %q, %v", v, err)
	}
}

// versionQuery is version.bind CH TXT.
func versionQuery() *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion("version.bind.", dns.TypeTXT)
	q.Question[0].Qclass = dns.ClassCHAOS
	return q
}

// txtOf returns the one string of m's one TXT answer, "" otherwise.
func txtOf(m *dns.Msg) string {
	if len(m.Answer) == 1 {
		if txt, ok := m.Answer[0].(*dns.TXT); ok && len(txt.Txt) == 1 {
			return txt.Txt[0]
		}
	}
	return ""
}

// doqVersion asks version.bind over a new DoQ connection.
func doqVersion(addr string, conf *tls.Config) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	c, err := doqclient.Dial(ctx, addr, doqclient.Config{TLS: conf})
	if err != nil {
		return "", err
	}
	defer c.Close()
	m, err := c.Exchange(ctx, versionQuery())
	if err != nil {
		return "", err
	}
	return txtOf(m), nil
}

// h3Version asks version.bind over a new HTTP/3 connection.
func h3Version(url string, conf *tls.Config) (string, error) {
	tr := &http3.Transport{TLSClientConfig: conf.Clone()}
	defer tr.Close()
	wire, err := versionQuery().Pack()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"?dns="+base64.RawURLEncoding.EncodeToString(wire), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/dns-message")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("http status %d", resp.StatusCode)
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return "", err
	}
	return txtOf(m), nil
}
