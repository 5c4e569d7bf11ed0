// Package tsig authenticates queries and answers with transaction
// signatures (RFC 8945): the tsig section of the configuration (keys and
// the fudge window), a Keyring that verifies signed queries and signs
// replies, and the pipeline stage that does both for the listeners.
//
// The HMAC framing is miekg/dns's (TsigVerifyWithProvider,
// TsigGenerateWithProvider); this package supplies the keys, the clock
// and the RFC's error handling.
package tsig

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/internal/field"
)

// DefaultFudge is the time window a signature is accepted in, either
// side of the time it was signed (RFC 8945 §5.2.3 recommends 300 s).
const DefaultFudge = 300 * time.Second

// MaxFudge is the largest fudge the TSIG record can carry (16 bits of
// seconds).
const MaxFudge = 65535 * time.Second

// Config is the tsig section: the keys dnsedge holds, for verifying
// queries, signing replies and signing queries to upstreams that name
// one.
type Config struct {
	Keys []KeySpec `yaml:"keys"`
	// Fudge is the accepted difference between a query's time signed
	// and dnsedge's clock; 0 means DefaultFudge.
	Fudge time.Duration `yaml:"fudge"`
}

// KeySpec is one shared key.
type KeySpec struct {
	// Name is the key's domain name, as the peers know it
	// ("xfr.example.").
	Name string `yaml:"name"`
	// Algorithm is hmac-sha256 (the default), hmac-sha512, or hmac-sha1
	// for old peers.
	Algorithm string `yaml:"algorithm"`
	// Secret is the key in base64. It is never printed: see Secret.
	Secret Secret `yaml:"secret"`
}

// Secret is a base64 key. Its String, GoString, Format and MarshalJSON
// hide it, so that a key printed with %v, logged with slog or encoded as
// JSON shows "[redacted]" rather than the secret.
type Secret string

const redacted = "[redacted]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Format prints [redacted] whatever the verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// algorithms maps the configuration's algorithm names to miekg/dns's.
var algorithms = map[string]string{
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha512": dns.HmacSHA512,
	"hmac-sha1":   dns.HmacSHA1,
}

// minSecret is the shortest secret accepted, in bytes: RFC 8945 §6
// asks for keys at least as long as the hash output; 16 bytes keeps out
// the obviously weak ones without refusing hmac-sha1 keys peers use.
const minSecret = 16

// WithDefaults returns c with the fudge and every key's algorithm
// defaulted.
func (c Config) WithDefaults() Config {
	if c.Fudge == 0 {
		c.Fudge = DefaultFudge
	}
	if len(c.Keys) > 0 {
		keys := make([]KeySpec, len(c.Keys))
		copy(keys, c.Keys)
		for i := range keys {
			if keys[i].Algorithm == "" {
				keys[i].Algorithm = "hmac-sha256"
			}
		}
		c.Keys = keys
	}
	return c
}

// On reports whether the section holds any key.
func (c Config) On() bool { return len(c.Keys) > 0 }

// Validate reports every problem of the section, each a *field.Error
// naming its field relative to the section ("keys[1].secret"). No error
// quotes a secret.
func (c Config) Validate() error {
	var errs []error
	seen := make(map[string]int)
	for i, k := range c.Keys {
		at := field.Index("keys", i)
		name, err := keyName(k.Name)
		if err != nil {
			errs = append(errs, field.Wrap(field.Join(at, "name"), err))
		} else if j, dup := seen[name]; dup {
			errs = append(errs, field.Errorf(field.Join(at, "name"), "key %q repeats keys[%d]", k.Name, j))
		} else {
			seen[name] = i
		}
		if _, ok := algorithms[strings.ToLower(k.Algorithm)]; !ok && k.Algorithm != "" {
			errs = append(errs, field.Errorf(field.Join(at, "algorithm"), "unknown algorithm %q (want hmac-sha256, hmac-sha512 or hmac-sha1)", k.Algorithm))
		}
		if _, err := decodeSecret(k.Secret); err != nil {
			errs = append(errs, field.Wrap(field.Join(at, "secret"), err))
		}
	}
	if c.Fudge < 0 || c.Fudge > MaxFudge {
		errs = append(errs, field.Errorf("fudge", "fudge %s must be between 0 and %s", c.Fudge, MaxFudge))
	} else if c.Fudge%time.Second != 0 {
		errs = append(errs, field.Errorf("fudge", "fudge %s must be whole seconds", c.Fudge))
	}
	return errors.Join(errs...)
}

// keyName returns s as a lower-case fully qualified name, or why it
// cannot name a key.
func keyName(s string) (string, error) {
	if s == "" {
		return "", errors.New("a key needs a name")
	}
	if _, ok := dns.IsDomainName(s); !ok {
		return "", fmt.Errorf("key name %q is not a domain name", s)
	}
	return dns.CanonicalName(s), nil
}

// decodeSecret returns the raw key. Its errors never quote the secret.
func decodeSecret(s Secret) ([]byte, error) {
	if s == "" {
		return nil, errors.New("a key needs a secret (base64)")
	}
	raw, err := base64.StdEncoding.DecodeString(string(s))
	if err != nil {
		return nil, errors.New("secret is not valid base64")
	}
	if len(raw) < minSecret {
		return nil, fmt.Errorf("secret of %d bytes is too short (at least %d)", len(raw), minSecret)
	}
	return raw, nil
}

// Fingerprint identifies the key named name, as configured (algorithm
// and secret), without revealing the secret: a SHA-256 over both, in
// hex; "" when c has no such key.
func (c Config) Fingerprint(name string) string {
	if name == "" {
		return ""
	}
	want, err := keyName(name)
	if err != nil {
		return ""
	}
	for _, k := range c.WithDefaults().Keys {
		if n, err := keyName(k.Name); err == nil && n == want {
			h := sha256.Sum256([]byte(n + "\x00" + strings.ToLower(k.Algorithm) + "\x00" + string(k.Secret)))
			return hex.EncodeToString(h[:])
		}
	}
	return ""
}

// Has reports whether c holds a key named name.
func (c Config) Has(name string) bool { return c.Fingerprint(name) != "" }
