// Package pebbletest runs pebble, the ACME test server (Debian package
// "pebble"), on loopback for tests of ACME issuance. Validation is real:
// pebble resolves the names it validates through a DNS server of the
// package that answers every name under Zone with 127.0.0.1, and connects
// to HTTPPort and TLSPort on that address.
package pebbletest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Zone is the zone the test DNS server answers for pebble: every name in
// it has the address 127.0.0.1 and no other records; names outside it do
// not exist.
const Zone = "dnsedge.test."

// Binary is where the Debian package installs pebble; Start also looks in
// PATH first.
const Binary = "/usr/bin/pebble"

// Pebble is a running pebble. Its methods are safe for concurrent use.
type Pebble struct {
	// DirURL is the ACME directory URL.
	DirURL string
	// CARoot is a PEM file holding the CA of pebble's own HTTPS
	// certificate, which an ACME client must trust (not the CA that
	// signs the certificates pebble issues: see Roots).
	CARoot string
	// HTTPPort and TLSPort are where pebble sends HTTP-01 and
	// TLS-ALPN-01 validations, on 127.0.0.1.
	HTTPPort, TLSPort int

	mgmtURL   string          // management interface (roots, intermediates)
	client    *http.Client    // trusts pebble's HTTPS certificate
	transport *http.Transport // of client
	logs      *logBuffer      // pebble's output
	stopOnce  sync.Once
	stop      func() // kills pebble and its DNS server
}

// Start starts pebble with fresh loopback ports and its DNS server, and
// waits for the ACME directory to answer. It skips the test when pebble
// is missing, unless the environment variable E2E_REQUIRED is 1, and then
// fails it. Real validation is on: neither PEBBLE_VA_ALWAYS_VALID nor
// authorization reuse. Pebble stops in t.Cleanup, which also logs its
// output when the test failed; Stop stops it earlier.
func Start(t testing.TB) *Pebble {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()

	// The Debian package ships no certificate for pebble's own HTTPS
	// listener, so Start makes one; CARoot is its CA.
	ca, err := newCA()
	if err != nil {
		t.Fatalf("make pebble's HTTPS certificate: %v", err)
	}
	certPEM, keyPEM, err := ca.leaf("127.0.0.1")
	if err != nil {
		t.Fatalf("make pebble's HTTPS certificate: %v", err)
	}
	p := &Pebble{CARoot: filepath.Join(dir, "pebble-ca.pem"), logs: &logBuffer{}}
	writeFile(t, p.CARoot, ca.certPEM())
	writeFile(t, filepath.Join(dir, "cert.pem"), certPEM)
	writeFile(t, filepath.Join(dir, "key.pem"), keyPEM)
	p.transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}}
	p.client = &http.Client{Transport: p.transport, Timeout: 5 * time.Second}

	dnsAddr, stopDNS := startDNS(t)
	var stopPebble func()
	for attempt := range 3 { // free ports can be taken before pebble binds them
		stopPebble, err = p.run(t, bin, dir, dnsAddr)
		if err == nil {
			break
		}
		t.Logf("start pebble, attempt %d: %v", attempt+1, err)
	}
	if err != nil {
		stopDNS()
		t.Fatalf("start pebble: %v\n%s", err, p.logs.String())
	}
	p.stop = func() {
		stopPebble()
		stopDNS()
		p.transport.CloseIdleConnections()
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("pebble output:\n%s", p.logs.String())
		}
	})
	return p
}

// Stop kills pebble and stops its DNS server, waiting for both. It may be
// called more than once.
func (p *Pebble) Stop() { p.stopOnce.Do(p.stop) }

// Roots returns the root pebble signs certificates with, from its
// management interface (/roots/0). It fails the test on error.
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	return p.pool(t, "/roots/0")
}

// Intermediates returns the intermediate that signs pebble's leaf
// certificates (/intermediates/0). It fails the test on error.
func (p *Pebble) Intermediates(t testing.TB) *x509.CertPool {
	t.Helper()
	return p.pool(t, "/intermediates/0")
}

// RootPEM returns the PEM of the root pebble signs certificates with
// (/roots/0), for a file of trusted roots. It fails the test on error.
func (p *Pebble) RootPEM(t testing.TB) []byte {
	t.Helper()
	return p.get(t, "/roots/0")
}

func (p *Pebble) pool(t testing.TB, path string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.get(t, path)) {
		t.Fatalf("get %s from pebble: no PEM certificate in the answer", path)
	}
	return pool
}

func (p *Pebble) get(t testing.TB, path string) []byte {
	t.Helper()
	resp, err := p.client.Get(p.mgmtURL + path)
	if err != nil {
		t.Fatalf("get %s from pebble: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get %s from pebble: %v %s", path, err, resp.Status)
	}
	return body
}

// binary returns the pebble executable, skipping or failing t when it is
// missing.
func binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("pebble")
	if err == nil {
		return bin
	}
	if _, err = os.Stat(Binary); err != nil {
		if os.Getenv("E2E_REQUIRED") == "1" {
			t.Fatalf("pebble not found and E2E_REQUIRED=1: %v", err)
		}
		t.Skipf("pebble not found (apt-get install pebble): %v", err)
	}
	return Binary
}

// run writes a config with fresh ports, starts pebble and waits for its
// directory to answer. It returns a function that kills pebble and waits
// for it to exit.
func (p *Pebble) run(t testing.TB, bin, dir, dnsAddr string) (func(), error) {
	t.Helper()
	ports := make([]int, 4)
	for i := range ports {
		ports[i] = freePort(t)
	}
	p.HTTPPort, p.TLSPort = ports[2], ports[3]
	listen, mgmt := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	p.DirURL, p.mgmtURL = "https://"+listen+"/dir", "https://"+mgmt
	cfg, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       p.HTTPPort,
		"tlsPort":                        p.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}})
	if err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(dir, "pebble-config.json")
	writeFile(t, cfgFile, cfg)

	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsAddr)
	cmd.Env = []string{ // no proxy variables: pebble must reach 127.0.0.1 directly
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"PEBBLE_VA_NOSLEEP=1",
		"PEBBLE_WFE_NONCEREJECT=0", // badNonce retries are the client's business
		"PEBBLE_AUTHZREUSE=0",      // every order is validated again
	}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	kill := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.client.Get(p.DirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return kill, nil
			}
		}
		select {
		case <-exited:
			return nil, errors.New("pebble exited before its directory answered")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			kill()
			return nil, fmt.Errorf("pebble directory %s did not answer: %v", p.DirURL, err)
		}
	}
}

func writeFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects pebble's output from its stdout and stderr copiers.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
