// Package edgetls provides the certificates for dnsedge's encrypted
// listeners (DoT, DoH over HTTP/2 and HTTP/3, DoQ) and the server
// *tls.Config built on them.
//
// A certificate comes from one of three sources, chosen by Spec: PEM files
// reloaded when they change on disk, a self-signed CA and leaf generated
// under the state directory, or ACME through certmagic. Callers import the
// package as edgetls; it imports nothing of dnsedge's.
package edgetls

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/dnsedge/dnsedge/internal/field"
)

// Challenge names accepted in ACMESpec.Challenges.
const (
	ChallengeTLSALPN = "tls-alpn-01"
	ChallengeHTTP    = "http-01"
)

// Client authentication modes accepted in Spec.ClientAuth.
const (
	ClientAuthNone    = "none"
	ClientAuthRequest = "request"
	ClientAuthRequire = "require"
)

// Defaults applied by Build when a field is empty.
const (
	DefaultACMECA         = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultHTTPAddress    = ":80"
	DefaultTLSALPNAddress = ":443"
)

// DefaultHosts are the subject alternative names of a self-signed leaf
// when Spec.Hosts is empty.
func DefaultHosts() []string { return []string{"localhost", "127.0.0.1", "::1"} }

// Spec is the `tls:` section of the configuration. It is decoded by the
// caller in strict mode; Validate checks it and Build turns it into Certs.
type Spec struct {
	// CertFile is a PEM file holding the leaf certificate, optionally
	// followed by its intermediates. KeyFile is its PEM private key.
	// Both are reloaded when they change on disk.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// SelfSigned generates a CA and a leaf signed by it under the state
	// directory, for development and the embedded default.
	SelfSigned bool `yaml:"self_signed"`
	// Hosts are the names and IPs the self-signed leaf covers; default
	// DefaultHosts. Only used with SelfSigned.
	Hosts []string `yaml:"hosts"`
	// ACME obtains and renews certificates from an ACME CA.
	ACME *ACMESpec `yaml:"acme"`
	// ClientCA is a PEM file of CAs that sign client certificates (mTLS).
	ClientCA string `yaml:"client_ca"`
	// ClientAuth is none (default), request (ask for a certificate,
	// verify it against ClientCA when one is set and a certificate is
	// given) or require (require one and verify it against ClientCA).
	ClientAuth string `yaml:"client_auth"`
}

// ACMESpec is the `tls.acme:` section.
type ACMESpec struct {
	// CA is the ACME directory URL; default DefaultACMECA.
	CA string `yaml:"ca"`
	// Email is the account contact. Required: without it certmagic
	// prompts on standard input during the first issuance.
	Email string `yaml:"email"`
	// Domains are the names to obtain certificates for; the first one is
	// served to clients that send no SNI or an unknown one.
	Domains []string `yaml:"domains"`
	// Challenges is a subset of tls-alpn-01 and http-01; default both.
	Challenges []string `yaml:"challenges"`
	// HTTPAddress is the ip:port the HTTP-01 solver listens on; default
	// DefaultHTTPAddress.
	HTTPAddress string `yaml:"http_address"`
	// TLSALPNAddress is the ip:port where the CA's TLS-ALPN-01 validation
	// arrives (RFC 8737 §3: port 443, possibly forwarded); default
	// DefaultTLSALPNAddress. While Build runs, before dnsedge's listeners
	// start, certmagic binds it briefly itself; afterwards the listener
	// using ServerConfig answers the challenge.
	TLSALPNAddress string `yaml:"tls_alpn_address"`
	// CARoot is a PEM file of roots to trust for the ACME server itself
	// (a private CA or a test server).
	CARoot string `yaml:"ca_root"`
	// OCSPStapling staples OCSP responses to served certificates; default
	// true.
	OCSPStapling *bool `yaml:"ocsp_stapling"`
}

// Validate returns every problem in s joined, each a *field.Error whose
// path is relative to the section ("acme.domains[1]"), so that the caller
// can put the section's own path in front with field.Prefix. It does not
// check that the files named exist: Build and CheckFiles report those.
func (s *Spec) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, field.Errorf(path, format, args...))
	}

	files := s.CertFile != "" || s.KeyFile != ""
	var sources []string
	if files {
		sources = append(sources, "cert_file")
	}
	if s.SelfSigned {
		sources = append(sources, "self_signed")
	}
	if s.ACME != nil {
		sources = append(sources, "acme")
	}
	switch {
	case len(sources) == 0:
		add("cert_file", "one of cert_file+key_file, self_signed or acme is required")
	case len(sources) > 1:
		add(sources[1], "cannot be combined with %s", strings.Join(without(sources, sources[1]), " or "))
	}
	if s.KeyFile != "" && s.CertFile == "" {
		add("key_file", "set without cert_file")
	}
	if s.CertFile != "" && s.KeyFile == "" {
		add("key_file", "required with cert_file")
	}

	if len(s.Hosts) > 0 && !s.SelfSigned {
		add("hosts", "only used with self_signed")
	}
	for i, h := range s.Hosts {
		// A wildcard covers the client-id names {id}.host of DoT and DoQ.
		if _, err := netip.ParseAddr(h); err != nil && !validName(strings.TrimPrefix(h, "*."), false) {
			add(fmt.Sprintf("hosts[%d]", i), "%q is neither an IP address nor a DNS name", h)
		}
	}

	switch s.ClientAuth {
	case "", ClientAuthNone:
		if s.ClientCA != "" {
			add("client_auth", "must be request or require when client_ca is set")
		}
	case ClientAuthRequest:
	case ClientAuthRequire:
		if s.ClientCA == "" {
			add("client_ca", "required when client_auth is require")
		}
	default:
		add("client_auth", "unknown value %q (want none, request or require)", s.ClientAuth)
	}

	if s.ACME != nil {
		errs = append(errs, field.Prefix("acme", errors.Join(s.ACME.validate()...)))
	}
	return errors.Join(errs...)
}

// validate reports the problems of the acme section, at paths relative to
// it.
func (a *ACMESpec) validate() []error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, field.Errorf(path, format, args...))
	}
	if a.CA != "" {
		if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
			add("ca", "%q is not an https URL", a.CA)
		}
	}
	if a.Email == "" {
		add("email", "required")
	} else if !strings.Contains(a.Email, "@") {
		add("email", "%q is not an email address", a.Email)
	}
	if len(a.Domains) == 0 {
		add("domains", "required")
	}
	seen := map[string]bool{}
	for i, d := range a.Domains {
		at := field.Index("domains", i)
		switch {
		case strings.HasPrefix(d, "*."):
			add(at, "%q: wildcards need the dns-01 challenge, which is not supported", d)
		case !validName(d, true):
			add(at, "%q is not a DNS name", d)
		case seen[strings.ToLower(d)]:
			add(at, "%q is listed twice", d)
		}
		seen[strings.ToLower(d)] = true
	}
	seenChal := map[string]bool{}
	for i, c := range a.Challenges {
		at := field.Index("challenges", i)
		switch {
		case c != ChallengeTLSALPN && c != ChallengeHTTP:
			add(at, "unknown challenge %q (want %s or %s)", c, ChallengeTLSALPN, ChallengeHTTP)
		case seenChal[c]:
			add(at, "%q is listed twice", c)
		}
		seenChal[c] = true
	}
	if a.HTTPAddress != "" {
		if err := checkHostPort(a.HTTPAddress); err != nil {
			add("http_address", "%v", err)
		} else if !a.challengeEnabled(ChallengeHTTP) {
			add("http_address", "set but %s is not enabled", ChallengeHTTP)
		}
	}
	if a.TLSALPNAddress != "" {
		if err := checkHostPort(a.TLSALPNAddress); err != nil {
			add("tls_alpn_address", "%v", err)
		} else if !a.challengeEnabled(ChallengeTLSALPN) {
			add("tls_alpn_address", "set but %s is not enabled", ChallengeTLSALPN)
		}
	}
	eff := a.effective()
	if checkHostPort(eff.HTTPAddress) == nil && checkHostPort(eff.TLSALPNAddress) == nil {
		if _, err := eff.listenHost(); err != nil {
			add("tls_alpn_address", "%v", err)
		}
	}
	return errs
}

// challengeEnabled reports whether the challenge is on, both being on when
// Challenges is empty.
func (a *ACMESpec) challengeEnabled(name string) bool {
	if len(a.Challenges) == 0 {
		return true
	}
	for _, c := range a.Challenges {
		if c == name {
			return true
		}
	}
	return false
}

// checkHostPort accepts "ip:port" and ":port" with a numeric port.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not ip:port: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be a number from 1 to 65535", addr)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: host must be an IP address or empty", addr)
		}
	}
	return nil
}

// validName reports whether s is a DNS host name (letters, digits,
// hyphens and underscores in labels of 1 to 63 bytes, 253 bytes at most,
// no trailing dot). With needDot the name must have two labels or more.
func validName(s string, needDot bool) bool {
	if s == "" || len(s) > 253 || (needDot && !strings.Contains(s, ".")) {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			ok := r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
			if !ok {
				return false
			}
		}
	}
	return true
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

// CheckFiles reads the files s names, with the code Build loads them
// with: the certificate and key, client_ca and acme.ca_root. It reports
// every file that cannot be read or parsed, joined, each a *field.Error at
// its key relative to the section ("cert_file"). It makes no self-signed
// or ACME certificate and changes nothing on disk.
func (s *Spec) CheckFiles() error {
	var errs []error
	if s.CertFile != "" && s.KeyFile != "" {
		if _, err := loadKeyPair(s.CertFile, s.KeyFile); err != nil {
			key := "cert_file"
			var ke *keyError
			if errors.As(err, &ke) {
				key = ke.key
			}
			errs = append(errs, field.Wrap(key, err))
		}
	}
	if s.ClientCA != "" {
		if _, err := loadCertPool(s.ClientCA); err != nil {
			errs = append(errs, field.Wrap("client_ca", err))
		}
	}
	if s.ACME != nil && s.ACME.CARoot != "" {
		if _, err := loadCertPool(s.ACME.CARoot); err != nil {
			errs = append(errs, field.Wrap("acme.ca_root", err))
		}
	}
	return errors.Join(errs...)
}
