// Package consul answers DNS names from Consul's health view and keeps
// the policy in force in step with Consul KV.
//
// Service discovery is a zone backend for a domain (default "consul."):
// [tag.]NAME.service[.DC].DOMAIN A and AAAA, the RFC 2782 form
// _NAME._tcp|_TAG.service… SRV, and NODE.node…. Each service asked for
// gets one watch, a blocking query on /v1/health/service/NAME, started
// by its first query and stopped when nobody asked for it a while; a
// query is answered from the watch's last good view, so answers go on
// while Consul is away, marked stale (EDE 3) once the view is older than
// a bound.
//
// The policy watcher follows a prefix of the KV store (default
// "gray/strategy/"): the key active names the version in force, and
// VERSION/route and VERSION/weight hold its rules and splits in the
// schema of a policy file.
package consul

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/internal/field"
)

// Defaults of Config.
const (
	DefaultDomain       = "consul."
	DefaultStaleAfter   = 30 * time.Second
	DefaultIdleAfter    = 5 * time.Minute
	DefaultFirstWait    = time.Second
	DefaultPolicyPrefix = "gray/strategy/"
	// BlockWait is the wait time of every blocking query: how long
	// Consul holds one open when nothing changes. A held query means
	// the view is current; past BlockWait and a margin without an
	// answer, the agent is taken for hung and the view ages.
	BlockWait = 30 * time.Second
)

// Config is the consul: section of the configuration file. Without an
// address nothing of it is on.
type Config struct {
	// Address is the agent's HTTP API: host:port, or a URL with scheme
	// http or https.
	Address string `yaml:"address"`
	// TokenFile holds the ACL token sent with every request; empty for
	// none.
	TokenFile string `yaml:"token_file"`
	// TLS configures HTTPS to the agent.
	TLS TLSConfig `yaml:"tls"`
	// Datacenter is asked when a name names none; empty: the agent's.
	Datacenter string `yaml:"datacenter"`
	// Domain is the zone the services are answered under; default
	// DefaultDomain.
	Domain string `yaml:"domain"`
	// OnlyPassing answers with passing instances only (the default);
	// false adds instances whose checks warn. Critical instances are
	// never answered.
	OnlyPassing *bool `yaml:"only_passing"`
	// TTL of the answers, per service; default 0, as Consul's own DNS.
	TTL TTLConfig `yaml:"ttl"`
	// StaleAfter is the age of a service's view (time since the last
	// answer from Consul) past which answers carry EDE 3, Stale Answer;
	// default DefaultStaleAfter.
	StaleAfter time.Duration `yaml:"stale_after"`
	// IdleAfter stops the watch of a service nobody asked for that long;
	// default DefaultIdleAfter.
	IdleAfter time.Duration `yaml:"idle_after"`
	// FirstWait bounds how long the first query for a service waits for
	// the watch's first view; default DefaultFirstWait. Past it the
	// query gets SERVFAIL.
	FirstWait time.Duration `yaml:"first_wait"`
	// Policy takes the policy in force from Consul KV.
	Policy PolicyConfig `yaml:"policy"`
}

// TLSConfig is how to reach the agent over HTTPS.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// TTLConfig is the TTL of answers: Default, or the service's own.
type TTLConfig struct {
	Default  time.Duration            `yaml:"default"`
	Services map[string]time.Duration `yaml:"services"`
}

// PolicyConfig takes the policy from Consul KV.
type PolicyConfig struct {
	// Enabled watches the prefix; the policy and policy_file keys of the
	// configuration must then be left out.
	Enabled bool `yaml:"enabled"`
	// Prefix is where the versions and the active key are; default
	// DefaultPolicyPrefix. It ends with "/".
	Prefix string `yaml:"prefix"`
}

// On reports whether the section is in use.
func (c Config) On() bool { return c.Address != "" }

// WithDefaults returns c with its defaults filled in.
func (c Config) WithDefaults() Config {
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	if _, ok := dns.IsDomainName(c.Domain); ok {
		c.Domain = dns.CanonicalName(c.Domain)
	}
	if c.OnlyPassing == nil {
		t := true
		c.OnlyPassing = &t
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.IdleAfter == 0 {
		c.IdleAfter = DefaultIdleAfter
	}
	if c.FirstWait == 0 {
		c.FirstWait = DefaultFirstWait
	}
	if c.Policy.Prefix == "" {
		c.Policy.Prefix = DefaultPolicyPrefix
	}
	return c
}

// Validate reports every problem of the section, each a *field.Error at
// a path relative to the section, joined.
func (c Config) Validate() error {
	var errs []error
	if !c.On() {
		if c.Policy.Enabled {
			errs = append(errs, field.Errorf("address", "policy.enabled needs the agent's address"))
		}
		return errors.Join(errs...)
	}
	if _, err := c.httpAddress(); err != nil {
		errs = append(errs, field.Wrap("address", err))
	}
	if c.Domain != "" {
		if _, ok := dns.IsDomainName(c.Domain); !ok || dns.CanonicalName(c.Domain) == "." {
			errs = append(errs, field.Errorf("domain", "%q is not a domain name below the root", c.Domain))
		}
	}
	if c.Datacenter != "" && strings.ContainsAny(c.Datacenter, "./ ") {
		errs = append(errs, field.Errorf("datacenter", "%q is not a datacenter name", c.Datacenter))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, field.Errorf("tls", "cert_file and key_file go together"))
	}
	for _, d := range []struct {
		at string
		v  time.Duration
	}{{"stale_after", c.StaleAfter}, {"idle_after", c.IdleAfter}, {"first_wait", c.FirstWait}, {"ttl.default", c.TTL.Default}} {
		if d.v < 0 {
			errs = append(errs, field.Errorf(d.at, "must not be negative"))
		}
	}
	if c.IdleAfter > 0 && c.IdleAfter < time.Second {
		errs = append(errs, field.Errorf("idle_after", "must be at least 1s"))
	}
	if c.TTL.Default > maxTTL {
		errs = append(errs, field.Errorf("ttl.default", "must be at most %s", maxTTL))
	}
	for name, d := range c.TTL.Services {
		at := field.Join("ttl.services", name)
		if d < 0 || d > maxTTL {
			errs = append(errs, field.Errorf(at, "must be between 0 and %s", maxTTL))
		}
		if name == "" || strings.ContainsAny(name, ". ") {
			errs = append(errs, field.Errorf(at, "%q is not a service name", name))
		}
	}
	if p := c.Policy.Prefix; p != "" && (!strings.HasSuffix(p, "/") || strings.HasPrefix(p, "/")) {
		errs = append(errs, field.Errorf("policy.prefix", "%q must end with / and not begin with one", p))
	}
	return errors.Join(errs...)
}

// maxTTL bounds configured TTLs: a day is plenty for a health view.
const maxTTL = 24 * time.Hour

// httpAddress returns the scheme and host:port of Address.
func (c Config) httpAddress() (*url.URL, error) {
	a := c.Address
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	u, err := url.Parse(a)
	if err != nil {
		return nil, fmt.Errorf("%q is not host:port or a URL", c.Address)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q: use http or https", u.Scheme)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return nil, fmt.Errorf("%q needs host:port", c.Address)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%q: the address takes no path", c.Address)
	}
	return u, nil
}

// ttlFor returns the TTL of service's answers, in seconds.
func (c Config) ttlFor(service string) uint32 {
	if d, ok := c.TTL.Services[service]; ok {
		return uint32(d / time.Second)
	}
	return uint32(c.TTL.Default / time.Second)
}

// ResolveFiles makes the token, CA, certificate and key file names
// relative to dir (the configuration file's directory).
func (c *Config) ResolveFiles(dir string) {
	for _, f := range []*string{&c.TokenFile, &c.TLS.CAFile, &c.TLS.CertFile, &c.TLS.KeyFile} {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(dir, *f)
		}
	}
}

// CheckFiles reads the token file and the TLS files the section names,
// as building the client does, and reports what cannot be used, each a
// *field.Error at its key.
func (c Config) CheckFiles() error {
	if !c.On() {
		return nil
	}
	var errs []error
	if c.TokenFile != "" {
		if _, err := os.ReadFile(c.TokenFile); err != nil {
			errs = append(errs, field.Wrap("token_file", err))
		}
	}
	if c.TLS != (TLSConfig{}) {
		tc := api.TLSConfig{Address: c.TLS.ServerName, CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile}
		if _, err := api.SetupTLSConfig(&tc); err != nil {
			errs = append(errs, field.Wrap("tls", err))
		}
	}
	return errors.Join(errs...)
}
