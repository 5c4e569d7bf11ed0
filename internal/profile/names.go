package profile

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DoHHost returns the host of a DoH URL after checking it the way the
// device needs it: the https scheme (a plain http:// URL would send
// queries in the clear; Apple requires https://), a host, and the path of the
// endpoint. A trailing RFC 6570 "{?dns}" is allowed.
func DoHHost(raw string) (string, error) {
	for _, r := range raw {
		if r <= ' ' || r >= 0x7f {
			return "", fmt.Errorf("%w %q: only printable ASCII without spaces (a non-ASCII host name in its xn-- form)", ErrDoHURL, raw)
		}
	}
	u, err := url.Parse(strings.TrimSuffix(raw, "{?dns}"))
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrDoHURL, raw, err)
	}
	switch {
	case u.Scheme == "http":
		return "", fmt.Errorf("%w %q: http:// would send queries in the clear; DoH needs https://", ErrDoHURL, raw)
	case u.Scheme != "https":
		return "", fmt.Errorf("%w %q: the scheme must be https://", ErrDoHURL, raw)
	case u.Hostname() == "":
		return "", fmt.Errorf("%w %q: no host", ErrDoHURL, raw)
	case u.User != nil:
		return "", fmt.Errorf("%w %q: a user name or password has no place in it", ErrDoHURL, raw)
	case u.Path == "" || u.Path == "/":
		return "", fmt.Errorf("%w %q: no path; give the endpoint's path, e.g. https://%s/dns-query", ErrDoHURL, raw, u.Host)
	case u.Fragment != "":
		return "", fmt.Errorf("%w %q: a fragment (#...) has no place in it", ErrDoHURL, raw)
	}
	return u.Hostname(), nil
}

// checkDoTName accepts a host name, which the device verifies the
// server's certificate against; an IP address is refused because Apple's
// DNS-over-TLS setting needs ServerName.
func checkDoTName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty; DoT needs the host name in the server's certificate", ErrDoTName)
	}
	if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return fmt.Errorf("%w %q: an IP address; DoT needs the host name in the server's certificate (give addresses with ServerAddresses)", ErrDoTName, name)
	}
	if strings.Contains(name, ":") || strings.Contains(name, "/") {
		return fmt.Errorf("%w %q: a host name alone, without scheme, port or path (DoT is port 853)", ErrDoTName, name)
	}
	if !isHostName(name) {
		return fmt.Errorf("%w %q: not a host name", ErrDoTName, name)
	}
	return nil
}

// matchDomain checks a SupplementalMatchDomains entry (an optional "*."
// then a domain name) and returns it without a trailing dot, lower case.
func matchDomain(d string) (string, error) {
	wild := strings.HasPrefix(d, "*.")
	name := strings.TrimSuffix(strings.TrimPrefix(d, "*."), ".")
	if name == "" || strings.Contains(name, "*") {
		return "", fmt.Errorf("%w %q: a domain name, optionally after one leading \"*.\"", ErrDomain, d)
	}
	if !isHostName(name) {
		return "", fmt.Errorf("%w %q: not a domain name", ErrDomain, d)
	}
	if wild {
		name = "*." + name
	}
	return strings.ToLower(name), nil
}

// isHostName tells whether s is a host name in presentation form: labels
// of 1 to 63 letters, digits, hyphens or underscores, joined by dots, at
// most 253 characters, with an optional trailing dot. Non-ASCII names go
// in their xn-- form.
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// checkText accepts what an XML property list can hold: UTF-8 without
// control characters.
func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q is not UTF-8", ErrText, what, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: %s %q holds a control character", ErrText, what, s)
		}
	}
	return nil
}

// rootCerts parses every certificate of a PEM file and checks that each
// is a CA certificate.
func rootCerts(pemData []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := pemData
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("%w %q: not a CA certificate (basic constraints CA:FALSE or absent); give the CA that issued the server's certificate", ErrCertificate, c.Subject)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM CERTIFICATE block", ErrCertificate)
	}
	return certs, nil
}
