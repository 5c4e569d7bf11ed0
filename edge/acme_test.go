package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/dnsedge/dnsedge/internal/leaktest"
	"github.com/dnsedge/dnsedge/tls/pebbletest"
	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// acmeZone is what the upstream of TestACMEDoT serves.
const acmeZone = `$ORIGIN test.example.
@    60 IN SOA ns hostmaster 1 3600 600 86400 30
www  60 IN A 192.0.2.10
`

// TestACMEDoT: certmagic obtains a certificate from pebble, with real
// TLS-ALPN-01 validation, and dnsedge's DoT listener serves it. The DoT
// listener binds the port pebble validates on, as a production DoT or DoH
// listener on 443 would; a renewal made while it holds the port is then
// validated through that listener.
//
// Not parallel: it checks that no goroutine outlives Close and pebble.
func TestACMEDoT(t *testing.T) {
	const domain = "dot.dnsedge.test"
	before := leaktest.Snapshot()
	p := pebbletest.Start(t)
	up := transporttest.StartFault(t, acmeZone)
	state := t.TempDir()
	cfg, err := Parse("acme.yaml", fmt.Appendf(nil, `listeners:
  - {proto: dot, address: "127.0.0.1:%[1]d"}
  - {proto: udp, address: "127.0.0.1:0"}
state_dir: %[2]q
tls:
  acme:
    ca: %[3]q
    email: ops@dnsedge.test
    domains: [%[4]s]
    challenges: [tls-alpn-01]
    tls_alpn_address: "127.0.0.1:%[1]d"
    ca_root: %[5]q
upstreams:
  - {name: up, url: "udp://%[6]s"}
`, p.TLSPort, state, p.DirURL, domain, p.CARoot, up.AddrV4()))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &acmeLog{}
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := srv.Start(); err != nil { // obtains the certificate
		t.Fatalf("start: %v\n%s", err, logs)
	}
	t.Logf("start with issuance took %v", time.Since(start))
	defer func() {
		if t.Failed() {
			t.Logf("dnsedge log:\n%s", logs)
		}
	}()
	dot := srv.Addrs()["dot"][0]
	if dot.Port() != uint16(p.TLSPort) {
		t.Fatalf("dot listener on %v, want port %d", dot, p.TLSPort)
	}
	roots, inter := p.Roots(t), p.Intermediates(t)

	first := queryDoT(t, dot, domain, roots, inter)

	t.Run("renewal validated through the DoT listener", func(t *testing.T) {
		served := logs.count("served key authentication certificate")
		if served == 0 {
			t.Fatal("the issuance at start was not validated through certmagic's GetCertificate")
		}
		// dnsedge's certmagic serves the challenge certificate (and logs
		// it) only from GetCertificate of dnsedge's own listeners; the
		// renewing instance could not bind the port the DoT listener
		// holds, and logs nowhere. Pebble now and then finds the new
		// order authorized already, without a challenge, despite
		// PEBBLE_AUTHZREUSE=0: such a renewal proves nothing and is
		// tried again, up to three times.
		got := served
		for try := 0; try < 3 && got <= served; try++ {
			renew(t, p, state, domain)
			got = logs.count("served key authentication certificate")
		}
		if got <= served {
			t.Fatalf("no TLS-ALPN-01 challenge handshake reached the DoT listener during the renewal (%d before, %d after)", served, got)
		}
		if got := queryDoT(t, dot, domain, roots, inter); !got.Equal(first) {
			t.Log("the DoT listener already serves the renewed certificate")
		}
	})

	if err := srv.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	up.Stop()
	p.Stop()
	leaktest.Check(t, before, 10*time.Second,
		// certmagic keeps one rate limiter per CA and account for the
		// life of the process (acmeclient.go: "TODO: stop rate limiter");
		// see edgetls.Certs.Close.
		"certmagic.(*RingBufferRateLimiter).loop",
	)
}

// queryDoT asks for www.test.example over DoT at addr, as a client that
// knows the listener as domain and trusts roots, checks the answer and the
// certificate, and returns the leaf the listener served.
func queryDoT(t *testing.T, addr netip.AddrPort, domain string, roots, inter *x509.CertPool) *x509.Certificate {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr.String(), &tls.Config{
		RootCAs:    roots,
		ServerName: domain,
		NextProtos: []string{"dot"},
	})
	if err != nil {
		t.Fatalf("DoT handshake with %s: %v", domain, err)
	}
	defer conn.Close()
	st := conn.ConnectionState()
	if st.NegotiatedProtocol != "dot" {
		t.Errorf("negotiated ALPN %q, want dot", st.NegotiatedProtocol)
	}
	leaf := st.PeerCertificates[0]
	if !slices.Equal(leaf.DNSNames, []string{domain}) {
		t.Errorf("leaf names %v, want [%s]", leaf.DNSNames, domain)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: domain}); err != nil {
		t.Errorf("verify the leaf against pebble's root and intermediate: %v", err)
	}

	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	dc := &dns.Conn{Conn: conn} // RFC 7858 §3.3: two-byte length prefix
	q := new(dns.Msg).SetQuestion("www.test.example.", dns.TypeA)
	if err := dc.WriteMsg(q); err != nil {
		t.Fatalf("write query: %v", err)
	}
	m, err := dc.ReadMsg()
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	if m.Id != q.Id || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("answer over DoT: %v", m)
	}
	if a, ok := m.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.10" {
		t.Fatalf("answer over DoT: %v, want 192.0.2.10", m.Answer[0])
	}
	return leaf
}

// renew forces the renewal of domain's certificate in dnsedge's state
// directory with a certmagic instance of the test's own, the way
// certmagic's maintenance renews it within dnsedge. The instance finds the
// TLS-ALPN port taken and leaves the challenge to whoever holds it.
func renew(t *testing.T, p *pebbletest.Pebble, state, domain string) {
	t.Helper()
	pem, err := os.ReadFile(p.CARoot)
	if err != nil {
		t.Fatal(err)
	}
	caRoot := x509.NewCertPool()
	caRoot.AppendCertsFromPEM(pem)
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zap.NewNop(),
	})
	defer cache.Stop()
	magic = certmagic.New(cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: filepath.Join(state, "acme")},
		Logger:  zap.NewNop(),
		Issuers: []certmagic.Issuer{},
	})
	magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                   p.DirURL,
		Email:                "ops@dnsedge.test",
		Agreed:               true,
		DisableHTTPChallenge: true,
		ListenHost:           "127.0.0.1",
		AltTLSALPNPort:       p.TLSPort,
		TrustedRoots:         caRoot,
		Logger:               zap.NewNop(),
	})}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := magic.RenewCertSync(ctx, domain, true); err != nil {
		t.Fatalf("renew %s: %v", domain, err)
	}
}

// acmeLog collects dnsedge's log from every goroutine.
type acmeLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *acmeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *acmeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *acmeLog) count(substr string) int { return strings.Count(l.String(), substr) }
