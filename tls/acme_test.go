package edgetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// TestACMEPebble obtains certificates from a real pebble over loopback,
// with real validation of both challenge types, and checks the chain
// against pebble's root.
//
// OCSP: pebble runs without an OCSP responder, so its certificates carry
// no responder URL and nothing is stapled. The test only checks that
// stapling is configured on (certmagic's OCSPConfig); fetching and
// stapling a response is certmagic's code and is not exercised here.
//
// Not parallel: it checks that no goroutine outlives Close and pebble.
func TestACMEPebble(t *testing.T) {
	before := goroutineSnapshot()
	p := startPebble(t)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.get(t, "/roots/0")) {
		t.Fatal("no root from pebble")
	}
	intermediates := x509.NewCertPool()
	if !intermediates.AppendCertsFromPEM(p.get(t, "/intermediates/0")) {
		t.Fatal("no intermediate from pebble")
	}
	verify := func(t *testing.T, addr, domain string) *x509.Certificate {
		t.Helper()
		conn, err := dialTLS(t, addr, &tls.Config{RootCAs: roots, ServerName: domain, NextProtos: []string{"dot"}})
		if err != nil {
			t.Fatalf("handshake for %s: %v", domain, err)
		}
		if err := echo(conn); err != nil {
			t.Fatal(err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, DNSName: domain}); err != nil {
			t.Fatalf("verify against pebble's root and intermediate: %v", err)
		}
		if !slices.Contains(leaf.DNSNames, domain) {
			t.Fatalf("leaf names %v, want %s", leaf.DNSNames, domain)
		}
		return leaf
	}
	build := func(t *testing.T, a *ACMESpec, state string) (*Certs, *logBuffer) {
		t.Helper()
		a.CA, a.Email, a.CARoot = p.dirURL, "ops@dnsedge.test", p.caRoot
		log, logs := testLogger(t, slog.LevelDebug)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := Build(ctx, Spec{ACME: a}, state, log)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		if c.acme.magic.OCSP.DisableStapling {
			t.Error("OCSP stapling is off by default")
		}
		return c, logs
	}

	t.Run("tls-alpn-01", func(t *testing.T) {
		const domain = "alpn.dnsedge.test"
		c, _ := build(t, &ACMESpec{
			Domains:        []string{domain},
			Challenges:     []string{ChallengeTLSALPN},
			TLSALPNAddress: portAddr(p.tlsPort),
		}, t.TempDir())
		defer c.Close()
		// During Build certmagic answered on the port itself; now our
		// listener holds it, as dnsedge's DoT or DoH listener would.
		cfg := c.ServerConfig([]string{"dot"})
		if !slices.Equal(cfg.NextProtos, []string{"dot", ACMEALPN}) {
			t.Errorf("NextProtos = %v", cfg.NextProtos)
		}
		ln := listenLikeDnsedge(t, portAddr(p.tlsPort), cfg)
		first := verify(t, ln.addr, domain)

		// A forced renewal finds the port taken and relies on our
		// listener: pebble's validation must reach GetCertificate.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := c.acme.magic.RenewCertSync(ctx, domain, true); err != nil {
			t.Fatalf("renew with the challenge answered by our listener: %v", err)
		}
		ln.waitChallenge(t)
		if got := verify(t, ln.addr, domain); !got.Equal(first) {
			t.Log("listener already serves the renewed certificate")
		}
	})

	t.Run("http-01", func(t *testing.T) {
		const domain = "http.dnsedge.test"
		state := t.TempDir()
		c, _ := build(t, &ACMESpec{
			Domains:     []string{domain},
			Challenges:  []string{ChallengeHTTP},
			HTTPAddress: portAddr(p.httpPort),
		}, state)
		cfg := c.ServerConfig([]string{"dot"})
		if slices.Contains(cfg.NextProtos, ACMEALPN) {
			t.Errorf("NextProtos = %v offers %s without the TLS-ALPN challenge", cfg.NextProtos, ACMEALPN)
		}
		addr := serveTLS(t, cfg)
		first := verify(t, addr, domain)
		c.Close()

		// A restart loads the certificate from the state directory.
		c2, _ := build(t, &ACMESpec{
			Domains:     []string{domain},
			Challenges:  []string{ChallengeHTTP},
			HTTPAddress: portAddr(p.httpPort),
		}, state)
		defer c2.Close()
		if got := verify(t, serveTLS(t, c2.ServerConfig([]string{"dot"})), domain); !got.Equal(first) {
			t.Errorf("restart obtained a new certificate instead of loading the stored one")
		}
		// Clients without SNI (DoT by IP) get the first domain.
		conn, err := dialTLS(t, addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("handshake without SNI: %v", err)
		}
		if got := conn.ConnectionState().PeerCertificates[0]; !got.Equal(first) {
			t.Errorf("without SNI got %v", got.DNSNames)
		}
	})

	t.Run("mtls exempts the challenge", func(t *testing.T) {
		const domain = "mtls.dnsedge.test"
		dir := t.TempDir()
		clientCA := issue(t, nil, "client CA", true)
		writeFile(t, dir+"/clients.pem", clientCA.certPEM())
		a := &ACMESpec{Domains: []string{domain}, Challenges: []string{ChallengeTLSALPN}, TLSALPNAddress: portAddr(p.tlsPort)}
		a.CA, a.Email, a.CARoot = p.dirURL, "ops@dnsedge.test", p.caRoot
		log, _ := testLogger(t, slog.LevelInfo)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := Build(ctx, Spec{ACME: a, ClientCA: dir + "/clients.pem", ClientAuth: ClientAuthRequire}, dir, log)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ln := listenLikeDnsedge(t, portAddr(p.tlsPort), c.ServerConfig([]string{"dot"}))
		if err := c.acme.magic.RenewCertSync(ctx, domain, true); err != nil {
			t.Fatalf("renew through a listener requiring client certificates: %v", err)
		}
		ln.waitChallenge(t)
		conn, err := dialTLS(t, ln.addr, &tls.Config{RootCAs: roots, ServerName: domain})
		if err == nil {
			err = echo(conn)
		}
		if err == nil {
			t.Fatal("a client without certificate got through")
		}
	})

	p.stop()
	checkNoNewGoroutines(t, before,
		// certmagic keeps one rate limiter per CA and account for the
		// life of the process (acmeclient.go: "TODO: stop rate limiter").
		"certmagic.(*RingBufferRateLimiter).loop",
	)
}
