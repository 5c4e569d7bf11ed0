package edgetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Source gives the certificate for a handshake. It is the shape of
// tls.Config.GetCertificate and must be safe for concurrent use.
type Source interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

var _ Source = (*Certs)(nil)

// Certs is the certificate source built from a Spec, with the client
// authentication settings that go with it. It is safe for concurrent use.
// The owner calls Close when the listeners using it are gone.
type Certs struct {
	src        Source
	acme       *acmeSource // nil unless the source is ACME
	caFile     string
	clientAuth tls.ClientAuthType
	clientCAs  *x509.CertPool
	closeOnce  sync.Once
}

// Build validates spec and makes its certificate source: it loads the
// files, generates or reuses the self-signed CA and leaf under
// stateDir/selfsigned, or obtains the ACME certificates (state under
// stateDir/acme) before returning, within ctx. Errors name the file at
// fault. log must not be nil.
func Build(ctx context.Context, spec Spec, stateDir string, log *slog.Logger) (*Certs, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("validate tls: %w", err)
	}
	if stateDir == "" && (spec.SelfSigned || spec.ACME != nil) {
		return nil, errors.New("build tls: self_signed and acme need a state directory")
	}
	c := &Certs{}
	switch spec.ClientAuth {
	case ClientAuthRequest:
		c.clientAuth = tls.RequestClientCert
		if spec.ClientCA != "" {
			c.clientAuth = tls.VerifyClientCertIfGiven
		}
	case ClientAuthRequire:
		c.clientAuth = tls.RequireAndVerifyClientCert
	}
	if spec.ClientCA != "" {
		pool, err := loadCertPool(spec.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("load client_ca: %w", err)
		}
		c.clientCAs = pool
	}

	switch {
	case spec.ACME != nil:
		src, err := newACME(ctx, spec.ACME, stateDir, log)
		if err != nil {
			return nil, err
		}
		c.src, c.acme = src, src
	case spec.SelfSigned:
		hosts := spec.Hosts
		if len(hosts) == 0 {
			hosts = DefaultHosts()
		}
		ss := newSelfSigned(filepath.Join(stateDir, "selfsigned"))
		if err := ss.ensure(hosts, time.Now()); err != nil {
			return nil, fmt.Errorf("prepare self-signed certificate: %w", err)
		}
		ss.log(log)
		fc, err := NewFileCert(ss.certFile, ss.keyFile, log, nil)
		if err != nil {
			return nil, fmt.Errorf("load self-signed certificate: %w", err)
		}
		c.src, c.caFile = fc, ss.caFile
	default:
		fc, err := NewFileCert(spec.CertFile, spec.KeyFile, log, nil)
		if err != nil {
			return nil, fmt.Errorf("load cert_file: %w", err)
		}
		c.src = fc
	}
	return c, nil
}

// GetCertificate returns the certificate for a handshake from the source.
func (c *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.src.GetCertificate(hello)
}

// ServerConfig returns a new server configuration: TLS 1.2 or later,
// certificates from c, client authentication from the spec, session
// tickets on (keys rotated by crypto/tls), and nextProtos as ALPN
// protocols followed by ACMEALPN when the TLS-ALPN-01 challenge is on.
// Challenge handshakes are answered by certmagic and, when client
// certificates are requested, exempted from them, since the CA has none.
// The caller owns the returned config; QUIC listeners use it as is (the
// ACME protocol is never negotiated over QUIC).
func (c *Certs) ServerConfig(nextProtos []string) *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.src.GetCertificate,
		ClientAuth:     c.clientAuth,
		ClientCAs:      c.clientCAs,
		NextProtos:     slices.Clone(nextProtos),
	}
	if c.acme == nil || !c.acme.tlsALPN {
		return cfg
	}
	cfg.NextProtos = append(cfg.NextProtos, ACMEALPN)
	if c.clientAuth != tls.NoClientCert {
		challenge := &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: c.src.GetCertificate,
			NextProtos:     []string{ACMEALPN},
		}
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if isACMEChallenge(hello) {
				return challenge, nil
			}
			return nil, nil
		}
	}
	return cfg
}

// CAFile returns the path of the self-signed CA certificate that clients
// should trust, or "" when the certificate is not self-signed.
func (c *Certs) CAFile() string { return c.caFile }

// Close stops ACME maintenance and waits for it to end. It is safe to call
// more than once; the file and self-signed sources have nothing to stop.
// Two kinds of certmagic goroutine outlive it: the lock-file refreshers of
// the last issuance, which end within 5 s, and one rate limiter per ACME
// CA and account, which certmagic keeps for the life of the process.
func (c *Certs) Close() error {
	c.closeOnce.Do(func() {
		if c.acme != nil {
			c.acme.close()
		}
	})
	return nil
}
