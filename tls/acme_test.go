package edgetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/internal/leaktest"
	"github.com/dnsedge/dnsedge/tls/pebbletest"
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
	before := leaktest.Snapshot()
	p := pebbletest.Start(t)
	roots, intermediates := p.Roots(t), p.Intermediates(t)
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
		a.CA, a.Email, a.CARoot = p.DirURL, "ops@dnsedge.test", p.CARoot
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
			TLSALPNAddress: portAddr(p.TLSPort),
		}, t.TempDir())
		defer c.Close()
		// During Build certmagic answered on the port itself; now our
		// listener holds it, as dnsedge's DoT or DoH listener would.
		cfg := c.ServerConfig([]string{"dot"})
		if !slices.Equal(cfg.NextProtos, []string{"dot", ACMEALPN}) {
			t.Errorf("NextProtos = %v", cfg.NextProtos)
		}
		ln := listenLikeDnsedge(t, portAddr(p.TLSPort), cfg)
		first := verify(t, ln.addr, domain)

		// A forced renewal finds the port taken and relies on our
		// listener: pebble's validation must reach GetCertificate.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		renewUntilChallenged(ctx, t, c, ln, domain)
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
			HTTPAddress: portAddr(p.HTTPPort),
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
			HTTPAddress: portAddr(p.HTTPPort),
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
		a := &ACMESpec{Domains: []string{domain}, Challenges: []string{ChallengeTLSALPN}, TLSALPNAddress: portAddr(p.TLSPort)}
		a.CA, a.Email, a.CARoot = p.DirURL, "ops@dnsedge.test", p.CARoot
		log, _ := testLogger(t, slog.LevelInfo)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := Build(ctx, Spec{ACME: a, ClientCA: dir + "/clients.pem", ClientAuth: ClientAuthRequire}, dir, log)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ln := listenLikeDnsedge(t, portAddr(p.TLSPort), c.ServerConfig([]string{"dot"}))
		renewUntilChallenged(ctx, t, c, ln, domain)
		conn, err := dialTLS(t, ln.addr, &tls.Config{RootCAs: roots, ServerName: domain})
		if err == nil {
			err = echo(conn)
		}
		if err == nil {
			t.Fatal("a client without certificate got through")
		}
	})

	p.Stop()
	leaktest.Check(t, before, 10*time.Second,
		// certmagic keeps one rate limiter per CA and account for the
		// life of the process (acmeclient.go: "TODO: stop rate limiter").
		"certmagic.(*RingBufferRateLimiter).loop",
	)
}

// alpnListener accepts TLS connections like a dnsedge listener: it closes
// those that negotiated ACMEALPN after the handshake, counting them, and
// echoes on the others.
type alpnListener struct {
	addr       string
	challenges chan struct{} // one value per challenge handshake
}

func listenLikeDnsedge(t *testing.T, addr string, cfg *tls.Config) *alpnListener {
	t.Helper()
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := &alpnListener{addr: ln.Addr().String(), challenges: make(chan struct{}, 100)}
	serveOn(t, &challengeCounter{Listener: ln, l: l})
	return l
}

// challengeCounter completes handshakes in Accept, so that the echo loop
// of serveOn only sees DNS-like connections.
type challengeCounter struct {
	net.Listener
	l *alpnListener
}

func (c *challengeCounter) Accept() (net.Conn, error) {
	for {
		conn, err := c.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := conn.(*tls.Conn)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err == nil && tc.ConnectionState().NegotiatedProtocol == ACMEALPN {
			c.l.challenges <- struct{}{}
			tc.Close()
			continue
		}
		if err != nil {
			tc.Close()
			continue
		}
		return tc, nil
	}
}

// renewUntilChallenged forces renewals of domain until a challenge
// handshake reaches ln, at most 3. Pebble now and then finalizes a
// renewal order on the authorization the first issuance left valid,
// without a new challenge (certmagic logs "skipping challenge initiation
// because authorization is not pending").
func renewUntilChallenged(ctx context.Context, t *testing.T, c *Certs, ln *alpnListener, domain string) {
	t.Helper()
	for try := 1; ; try++ {
		if err := c.acme.magic.RenewCertSync(ctx, domain, true); err != nil {
			t.Fatalf("renew with the challenge answered by our listener: %v", err)
		}
		if ln.challenged(5 * time.Second) {
			return
		}
		if try == 3 {
			t.Fatal("no challenge handshake on our listener in 3 renewals")
		}
		t.Logf("renewal %d needed no challenge; renewing again", try)
	}
}

// challenged reports whether a challenge handshake reached l within d.
func (l *alpnListener) challenged(d time.Duration) bool {
	select {
	case <-l.challenges:
		return true
	case <-time.After(d):
		return false
	}
}

func portAddr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
