package edgetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/caddyserver/certmagic"
)

// ACMEALPN is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
// ServerConfig offers it when that challenge is enabled; a listener must
// close a connection that negotiated it right after the handshake, as the
// validating CA sends nothing more (RFC 8737 §3).
const ACMEALPN = "acme-tls/1"

var _ Source = (*acmeSource)(nil)

// acmeSource serves certificates obtained and renewed by certmagic.
type acmeSource struct {
	magic   *certmagic.Config
	cache   *certmagic.Cache
	tlsALPN bool
}

// effective returns a copy of a with the defaults filled in.
func (a ACMESpec) effective() ACMESpec {
	if a.CA == "" {
		a.CA = DefaultACMECA
	}
	if len(a.Challenges) == 0 {
		a.Challenges = []string{ChallengeTLSALPN, ChallengeHTTP}
	}
	if a.HTTPAddress == "" {
		a.HTTPAddress = DefaultHTTPAddress
	}
	if a.TLSALPNAddress == "" {
		a.TLSALPNAddress = DefaultTLSALPNAddress
	}
	if a.OCSPStapling == nil {
		on := true
		a.OCSPStapling = &on
	}
	return a
}

// listenHost returns the one host certmagic's solvers listen on: certmagic
// has a single ListenHost for both challenges, so with both on, the hosts
// of HTTPAddress and TLSALPNAddress must be equal. a must be effective.
func (a *ACMESpec) listenHost() (string, error) {
	httpHost, _, _ := net.SplitHostPort(a.HTTPAddress)
	alpnHost, _, _ := net.SplitHostPort(a.TLSALPNAddress)
	http, alpn := a.challengeEnabled(ChallengeHTTP), a.challengeEnabled(ChallengeTLSALPN)
	switch {
	case http && alpn && httpHost != alpnHost:
		return "", fmt.Errorf("host %q differs from http_address host %q; with both challenges on they must be equal", alpnHost, httpHost)
	case http:
		return httpHost, nil
	default:
		return alpnHost, nil
	}
}

// newACME sets up certmagic for spec and obtains (or loads from
// stateDir/acme and renews if due) a certificate for every domain before
// returning. ctx bounds that work. The returned source's cache runs
// certmagic's maintenance until close.
func newACME(ctx context.Context, spec *ACMESpec, stateDir string, log *slog.Logger) (*acmeSource, error) {
	a := spec.effective()
	host, err := a.listenHost()
	if err != nil {
		return nil, fmt.Errorf("configure acme: %w", err)
	}
	_, httpPort, _ := net.SplitHostPort(a.HTTPAddress)
	_, alpnPort, _ := net.SplitHostPort(a.TLSALPNAddress)
	altHTTP, _ := strconv.Atoi(httpPort)
	altALPN, _ := strconv.Atoi(alpnPort)

	var roots *x509.CertPool
	if a.CARoot != "" {
		if roots, err = loadCertPool(a.CARoot); err != nil {
			return nil, err
		}
	}

	zl := newZapLogger(log.With("component", "certmagic"))
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zl,
	})
	magic = certmagic.New(cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: filepath.Join(stateDir, "acme")},
		OCSP:    certmagic.OCSPConfig{DisableStapling: !*a.OCSPStapling},
		Logger:  zl,
		// Clients of DoT by IP often send no SNI; serve them the first
		// domain rather than failing the handshake.
		DefaultServerName:  a.Domains[0],
		FallbackServerName: a.Domains[0],
		// Non-nil, so that certmagic does not create its default issuer.
		Issuers: []certmagic.Issuer{},
	})
	src := &acmeSource{magic: magic, cache: cache, tlsALPN: a.challengeEnabled(ChallengeTLSALPN)}
	magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                      a.CA,
		Email:                   a.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    !a.challengeEnabled(ChallengeHTTP),
		DisableTLSALPNChallenge: !src.tlsALPN,
		ListenHost:              host,
		AltHTTPPort:             altHTTP,
		AltTLSALPNPort:          altALPN,
		TrustedRoots:            roots,
		Logger:                  zl,
	})}

	log.Info("managing acme certificates", "ca", a.CA, "domains", a.Domains, "challenges", a.Challenges)
	if err := magic.ManageSync(ctx, a.Domains); err != nil {
		cache.Stop()
		return nil, fmt.Errorf("obtain acme certificates for %v from %s: %w", a.Domains, a.CA, err)
	}
	log.Info("acme certificates ready", "domains", a.Domains)
	return src, nil
}

// GetCertificate answers TLS-ALPN-01 challenge handshakes with the
// challenge certificate and other handshakes with the managed one.
func (s *acmeSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.magic.GetCertificate(hello)
}

// close stops certmagic's maintenance goroutine and waits for it.
func (s *acmeSource) close() { s.cache.Stop() }

// isACMEChallenge reports whether hello is a TLS-ALPN-01 validation, in
// the form certmagic answers (RFC 8737 §3: SNI and only acme-tls/1).
func isACMEChallenge(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ACMEALPN
}

// loadCertPool reads a PEM file of certificates into a new pool.
func loadCertPool(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("load CA file %s: no PEM certificate in it", name)
	}
	return pool, nil
}
