// Package admin is the admin HTTP listener of dnsedge: where operators and
// programs change what a running server serves (the records API of
// edge/records today). It owns the listener's configuration section, who
// may call it (bearer tokens kept as SHA-256 hashes, or client
// certificates), and a small server other packages hang their handlers on.
// It knows nothing of what those handlers do.
package admin

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/internal/field"
	edgetls "github.com/dnsedge/dnsedge/tls"
)

// DefaultAddress is where the admin listener binds when its section names
// no address: loopback only.
const DefaultAddress = "127.0.0.1:9154"

// Access levels of a grant.
const (
	AccessRead  = "read"
	AccessWrite = "write" // write includes read
	// AccessAdmin includes write, and may also operate the server: start,
	// promote or abort a canary, roll back, run drills.
	AccessAdmin = "admin"
)

// AllZones in a grant's zones is every zone.
const AllZones = "*"

// Config is the `admin:` section. The listener is off when the section is
// absent (the server holds a nil *Config); present, it listens on Address,
// DefaultAddress when empty.
type Config struct {
	// Address is ip:port. An address that is not loopback needs TLS:
	// bearer tokens must not cross a network in clear.
	Address string `yaml:"address"`
	// Tokens are the bearer tokens that may call the listener, each kept
	// as the SHA-256 of the token, never the token itself.
	Tokens []Token `yaml:"tokens"`
	// Clients are the client certificates that may call the listener
	// (mTLS): a verified certificate whose subject common name is a
	// client's id acts with that client's grant. They need tls with a
	// client_ca.
	Clients []Grant `yaml:"clients"`
	// TLS serves the listener over HTTPS; client_auth and client_ca turn
	// client certificates on.
	TLS *edgetls.Spec `yaml:"tls"`
}

// Grant is what one caller may do: read, or read and write, the zones
// listed (AllZones: every zone).
type Grant struct {
	// ID names the caller in the audit log; for a client certificate it
	// is the certificate's subject common name.
	ID     string   `yaml:"id"`
	Zones  []string `yaml:"zones"`
	Access string   `yaml:"access"` // read | write
}

// Token is a bearer token's grant and the hex SHA-256 of the token (as
// `printf %s "$TOKEN" | sha256sum` prints it).
type Token struct {
	Grant  `yaml:",inline"`
	SHA256 string `yaml:"sha256"`
}

// WithDefaults returns c with the default address filled in.
func (c Config) WithDefaults() Config {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	return c
}

// Validate reports every problem of the section, each a *field.Error
// relative to it.
func (c *Config) Validate() error {
	var errs []error
	ap, err := netip.ParseAddrPort(c.Address)
	if err != nil {
		errs = append(errs, field.Errorf("address", "admin address %q must be ip:port", c.Address))
	} else if !ap.Addr().IsLoopback() && c.TLS == nil {
		errs = append(errs, field.Errorf("address", "admin address %s is not loopback: it needs tls, or bearer tokens would cross the network in clear", c.Address))
	}
	if len(c.Tokens) == 0 && len(c.Clients) == 0 {
		errs = append(errs, field.Errorf("", "the admin listener needs tokens or clients: nobody could call it"))
	}
	ids := make(map[string]string)
	for i, t := range c.Tokens {
		at := field.Index("tokens", i)
		errs = append(errs, t.Grant.validate(at, ids)...)
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != 32 {
			errs = append(errs, field.Errorf(field.Join(at, "sha256"), "sha256 must be the 64 hex digits of the token's SHA-256 (printf %%s \"$TOKEN\" | sha256sum)"))
		}
	}
	for i, g := range c.Clients {
		errs = append(errs, g.validate(field.Index("clients", i), ids)...)
	}
	if c.TLS != nil {
		errs = append(errs, field.Prefix("tls", c.TLS.Validate()))
	}
	if len(c.Clients) > 0 && (c.TLS == nil || c.TLS.ClientCA == "") {
		errs = append(errs, field.Errorf("clients", "client certificates need tls with a client_ca to verify them"))
	}
	return errors.Join(errs...)
}

func (g Grant) validate(at string, ids map[string]string) []error {
	var errs []error
	switch {
	case g.ID == "":
		errs = append(errs, field.Errorf(at, "needs an id (it names the caller in the audit log)"))
	case strings.ContainsAny(g.ID, "\x00\n\r"):
		errs = append(errs, field.Errorf(field.Join(at, "id"), "id %q holds a control character", g.ID))
	case ids[g.ID] != "":
		errs = append(errs, field.Errorf(field.Join(at, "id"), "id %q is already used by %s", g.ID, ids[g.ID]))
	default:
		ids[g.ID] = at
	}
	switch g.Access {
	case AccessRead, AccessWrite, AccessAdmin:
	case "":
		errs = append(errs, field.Errorf(at, "needs access: %s, %s or %s", AccessRead, AccessWrite, AccessAdmin))
	default:
		errs = append(errs, field.Errorf(field.Join(at, "access"), "access %q must be %s, %s or %s", g.Access, AccessRead, AccessWrite, AccessAdmin))
	}
	if len(g.Zones) == 0 {
		errs = append(errs, field.Errorf(at, "needs zones: the zones it may reach, or [\"*\"] for every zone"))
	}
	for j, z := range g.Zones {
		if z == AllZones {
			continue
		}
		if _, ok := dns.IsDomainName(z); !ok || z == "" || strings.ContainsAny(z, " \t\n") {
			errs = append(errs, field.Errorf(field.Index(field.Join(at, "zones"), j), "%q is not a domain name", z))
		}
	}
	return errs
}
