package edgetls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestSelfSignedBuild(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	log, _ := testLogger(t, slog.LevelInfo)
	c, err := Build(context.Background(), Spec{SelfSigned: true}, state, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := filepath.Join(state, "selfsigned")
	if c.CAFile() != filepath.Join(dir, "ca.pem") {
		t.Errorf("CAFile() = %q", c.CAFile())
	}
	for name, want := range map[string]os.FileMode{
		dir:                              0o700 | os.ModeDir,
		filepath.Join(dir, "ca-key.pem"): 0o600,
		filepath.Join(dir, "key.pem"):    0o600,
		filepath.Join(dir, "ca.pem"):     0o644,
		filepath.Join(dir, "cert.pem"):   0o644,
	} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode(), want)
		}
	}
	caPEM, err := os.ReadFile(c.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}

	addr := serveTLS(t, c.ServerConfig(nil))
	for _, name := range []string{"127.0.0.1", "localhost"} {
		conn, err := dialTLS(t, addr, &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			t.Fatalf("verify for %s trusting ca.pem: %v", name, err)
		}
		if err := echo(conn); err != nil {
			t.Fatal(err)
		}
	}
	leaf := mustLoadCert(t, filepath.Join(dir, "cert.pem"))
	if err := leaf.VerifyHostname("::1"); err != nil {
		t.Errorf("leaf does not cover ::1: %v", err)
	}
	if _, err := dialTLS(t, addr, &tls.Config{RootCAs: roots, ServerName: "other.example"}); err == nil {
		t.Error("verified for a name not in Hosts")
	}
}

// TestSelfSignedProfile checks what browsers require: a P-256 CA with
// CA:TRUE and keyCertSign, a leaf with serverAuth, SANs and at most 398
// days of validity.
func TestSelfSignedProfile(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ss := newSelfSigned(t.TempDir())
	if err := ss.ensure([]string{"dns.lan", "10.1.2.3"}, now); err != nil {
		t.Fatal(err)
	}
	ca, leaf := mustLoadCert(t, ss.caFile), mustLoadCert(t, ss.certFile)
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA %v, key usage %v", ca.IsCA, ca.KeyUsage)
	}
	if d := ca.NotAfter.Sub(now); d < 9*365*24*time.Hour {
		t.Errorf("CA valid for %v, want about ten years", d)
	}
	if leaf.IsCA || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("leaf: IsCA %v, ext key usage %v, key usage %v", leaf.IsCA, leaf.ExtKeyUsage, leaf.KeyUsage)
	}
	if !slices.Equal(leaf.DNSNames, []string{"dns.lan"}) || len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "10.1.2.3" {
		t.Errorf("leaf SANs: DNS %v, IP %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 398*24*time.Hour {
		t.Errorf("leaf valid for %v, more than 398 days", d)
	}
	for _, c := range []*x509.Certificate{ca, leaf} {
		if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s: key is not ECDSA P-256", c.Subject)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(ca), DNSName: "dns.lan"}); err != nil {
		t.Errorf("leaf does not verify: %v", err)
	}
}

func TestSelfSignedReuse(t *testing.T) {
	t.Parallel()
	hosts := DefaultHosts()
	now := time.Now()
	tests := []struct {
		name     string
		hosts    []string
		now      time.Time
		corrupt  string // file to overwrite with garbage first
		wantCA   bool   // CA regenerated
		wantLeaf bool   // leaf regenerated
	}{
		{name: "reuse", hosts: hosts, now: now},
		{name: "fewer hosts", hosts: hosts[:1], now: now},
		{name: "host added", hosts: append(slices.Clone(hosts), "dns.lan"), now: now, wantLeaf: true},
		{name: "leaf expires within 30 days", hosts: hosts, now: now.Add(370 * 24 * time.Hour), wantLeaf: true},
		{name: "leaf has 40 days left", hosts: hosts, now: now.Add(357 * 24 * time.Hour)},
		{name: "leaf unreadable", hosts: hosts, now: now, corrupt: "cert.pem", wantLeaf: true},
		{name: "leaf key lost", hosts: hosts, now: now, corrupt: "key.pem", wantLeaf: true},
		{name: "CA unreadable", hosts: hosts, now: now, corrupt: "ca.pem", wantCA: true, wantLeaf: true},
		{name: "CA key lost", hosts: hosts, now: now, corrupt: "ca-key.pem", wantCA: true, wantLeaf: true},
		{name: "CA near its end", hosts: hosts, now: now.Add(9 * 365 * 24 * time.Hour), wantCA: true, wantLeaf: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ss := newSelfSigned(t.TempDir())
			if err := ss.ensure(hosts, now); err != nil {
				t.Fatal(err)
			}
			if !ss.caGenerated || !ss.leafGenerated {
				t.Fatal("first run did not generate")
			}
			ca0, leaf0 := mustLoadCert(t, ss.caFile), mustLoadCert(t, ss.certFile)
			if tt.corrupt != "" {
				writeFile(t, filepath.Join(ss.dir, tt.corrupt), []byte("garbage"))
			}
			if err := ss.ensure(tt.hosts, tt.now); err != nil {
				t.Fatal(err)
			}
			ca1, leaf1 := mustLoadCert(t, ss.caFile), mustLoadCert(t, ss.certFile)
			if got := !ca1.Equal(ca0); got != tt.wantCA || ss.caGenerated != tt.wantCA {
				t.Errorf("CA regenerated %v (flag %v), want %v", got, ss.caGenerated, tt.wantCA)
			}
			if got := !leaf1.Equal(leaf0); got != tt.wantLeaf || ss.leafGenerated != tt.wantLeaf {
				t.Errorf("leaf regenerated %v (flag %v), want %v", got, ss.leafGenerated, tt.wantLeaf)
			}
			if _, err := leaf1.Verify(x509.VerifyOptions{Roots: poolOf(ca1), CurrentTime: tt.now, DNSName: tt.hosts[0]}); err != nil {
				t.Errorf("leaf does not verify against the CA: %v", err)
			}
		})
	}
}

func TestClientAuth(t *testing.T) {
	t.Parallel()
	clientCA := issue(t, nil, "client CA", true)
	good := issue(t, clientCA, "client.example", false)
	stranger := issue(t, issue(t, nil, "other CA", true), "client.example", false)
	dir := t.TempDir()
	clientCAFile := filepath.Join(dir, "clients.pem")
	writeFile(t, clientCAFile, clientCA.certPEM())

	tests := []struct {
		name    string
		auth    string
		client  *issued // nil: no client certificate
		wantErr bool
	}{
		{name: "require without certificate", auth: "require", wantErr: true},
		{name: "require with certificate", auth: "require", client: good},
		{name: "require with unknown signer", auth: "require", client: stranger, wantErr: true},
		{name: "request without certificate", auth: "request"},
		{name: "request with certificate", auth: "request", client: good},
		{name: "request with unknown signer", auth: "request", client: stranger, wantErr: true},
	}
	for _, tt := range tests {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tt.name+"/"+tls.VersionName(version), func(t *testing.T) {
				t.Parallel()
				log, _ := testLogger(t, slog.LevelWarn)
				c, err := Build(context.Background(), Spec{SelfSigned: true, ClientCA: clientCAFile, ClientAuth: tt.auth}, t.TempDir(), log)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				addr := serveTLS(t, c.ServerConfig(nil))
				cfg := &tls.Config{RootCAs: poolOf(mustLoadCert(t, c.CAFile())), ServerName: "localhost",
					MinVersion: version, MaxVersion: version}
				if tt.client != nil {
					// Sent even when its issuer is not among the server's
					// acceptable CAs, which crypto/tls would skip.
					cert := tt.client.tlsCert()
					cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
				}
				conn, err := dialTLS(t, addr, cfg)
				if err == nil {
					err = echo(conn) // with TLS 1.3 the rejection arrives here
				}
				if (err != nil) != tt.wantErr {
					t.Fatalf("error %v, want error %v", err, tt.wantErr)
				}
			})
		}
	}
}

func mustLoadCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return cert
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// TestSelfSignedWildcard: a wildcard host covers the client-id names under
// it, and a leaf made with one is reused on the next start.
func TestSelfSignedWildcard(t *testing.T) {
	t.Parallel()
	hosts := []string{"dns.test", "*.dns.test", "127.0.0.1"}
	dir := t.TempDir()
	now := time.Now()
	ss := newSelfSigned(dir)
	if err := ss.ensure(hosts, now); err != nil {
		t.Fatal(err)
	}
	ca, leaf := mustLoadCert(t, ss.caFile), mustLoadCert(t, ss.certFile)
	for _, name := range []string{"dns.test", "alice.dns.test"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(ca), DNSName: name}); err != nil {
			t.Errorf("leaf does not verify for %s: %v", name, err)
		}
	}
	again := newSelfSigned(dir)
	if err := again.ensure(hosts, now); err != nil {
		t.Fatal(err)
	}
	if again.caGenerated || again.leafGenerated {
		t.Errorf("second start regenerated: CA %v leaf %v", again.caGenerated, again.leafGenerated)
	}
}
