package transport

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
)

// SPKIPin is the SHA-256 digest of a certificate's DER-encoded
// SubjectPublicKeyInfo, as in RFC 7469 §2.4 and the out-of-band key-pinned
// privacy profile of RFC 7858 §4.2.
type SPKIPin [sha256.Size]byte

// ParseSPKIPin parses a pin written as standard base64 of the SHA-256
// digest (44 characters), the form `openssl ... | openssl dgst -sha256
// -binary | base64` prints.
func ParseSPKIPin(s string) (SPKIPin, error) {
	var p SPKIPin
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return p, fmt.Errorf("decode spki pin %q: %w", s, err)
	}
	if len(b) != len(p) {
		return p, fmt.Errorf("decode spki pin %q: %d bytes, want a %d-byte SHA-256 digest", s, len(b), len(p))
	}
	copy(p[:], b)
	return p, nil
}

// PinOf returns the SPKI pin of cert.
func PinOf(cert *x509.Certificate) SPKIPin { return sha256.Sum256(cert.RawSubjectPublicKeyInfo) }

// String returns the pin in the base64 form ParseSPKIPin reads.
func (p SPKIPin) String() string { return base64.StdEncoding.EncodeToString(p[:]) }

// LoadCAFile reads PEM certificates from path into a new pool. A file
// without any certificate is an error.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("read ca file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// TLSOptions are the client-side TLS settings of a tls://, https:// or
// quic:// upstream. The zero value verifies the server against the system
// roots under the URL's host.
type TLSOptions struct {
	// ServerName is sent as SNI and is the name the server certificate
	// must carry. Empty means the URL's host; for an IP literal the
	// certificate must then carry that IP address as a SAN (no SNI is
	// sent for an IP, RFC 6066 §3).
	ServerName string
	// Pins, when not empty, replace verification against roots: the
	// server must send a certificate whose SPKI matches a pin, the leaf
	// must chain to it, be valid now, and carry the server name. A pin
	// may name the leaf itself.
	Pins []SPKIPin
	// RootCAs verifies the server when there are no pins; nil means the
	// system pool.
	RootCAs *x509.CertPool
}

// ClientTLSConfig returns the base client configuration for ep under opts:
// server name, TLS 1.2 at least, and the verification opts describe. The
// exchanger constructors clone it and add their ALPN protocol and their
// own session cache, so it may be shared by every path of an upstream.
func ClientTLSConfig(opts TLSOptions, ep Endpoint) (*tls.Config, error) {
	name := opts.ServerName
	switch {
	case name != "":
	case ep.Host != "":
		name = ep.Host
	case ep.Addr.IsValid():
		name = ep.Addr.String()
	default:
		return nil, errors.New("build tls config: no server name to verify")
	}
	conf := &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12, RootCAs: opts.RootCAs}
	if len(opts.Pins) > 0 {
		pins := make(map[SPKIPin]bool, len(opts.Pins))
		for _, p := range opts.Pins {
			pins[p] = true
		}
		// Go verifies nothing under InsecureSkipVerify; VerifyConnection
		// does all of it, on full and resumed handshakes alike.
		conf.RootCAs = nil
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, name, pins)
		}
	}
	return conf, nil
}

// ErrPinMismatch: no certificate the server sent matches a configured SPKI
// pin.
var ErrPinMismatch = errors.New("no certificate matches a pinned spki")

// verifyPinned checks that some certificate in certs matches a pin and
// that the leaf chains to it (the pinned certificates are the only trust
// anchors, the others intermediates), is valid now and carries name.
// Matching a pin without the chain check would let an attacker present a
// pinned certificate (which is public) beside a leaf of its own.
func verifyPinned(certs []*x509.Certificate, name string, pins map[SPKIPin]bool) error {
	if len(certs) == 0 {
		return fmt.Errorf("verify pinned certificate: %w: the server sent none", ErrPinMismatch)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	matched := false
	for _, c := range certs {
		if pins[PinOf(c)] {
			roots.AddCert(c)
			matched = true
		} else {
			inter.AddCert(c)
		}
	}
	if !matched {
		return fmt.Errorf("verify pinned certificate: %w", ErrPinMismatch)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
	if err != nil {
		return fmt.Errorf("verify pinned certificate: %w", err)
	}
	return nil
}

// exchangerTLS clones base for one exchanger: its ALPN protocol (RFC 7858
// §3.2 "dot", RFC 9250 §4.1.1 "doq", "h2" or "h3" for DoH), TLS 1.2 at
// least (TLS 1.3 for QUIC, which quic-go enforces) and a session cache of
// its own, so a reconnect resumes the session (RFC 8446 §2.2, RFC 7858 §3.4).
// A session cache set on base is kept instead: its owner shares it between
// exchangers on purpose.
func exchangerTLS(base *tls.Config, alpn string) (*tls.Config, error) {
	if base == nil || base.ServerName == "" {
		return nil, errors.New("build tls config: a server name is required (see ClientTLSConfig)")
	}
	c := base.Clone()
	c.NextProtos = []string{alpn}
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	if c.ClientSessionCache == nil {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	}
	return c, nil
}
