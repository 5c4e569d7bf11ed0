package middleware

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/miekg/dns"
)

// NXDomainConfig is the nxdomain_cache section of the configuration: the
// suffixes under which names that do not exist are remembered and denied
// locally, whatever type is asked for.
type NXDomainConfig struct {
	// Suffixes are the domains covered, such as "internal." or
	// "corp.example.": a name at or under one of them is cached. Empty
	// turns the cache off.
	Suffixes []string `yaml:"suffixes"`
	// TTL is how long a denial is kept (default 30s, at most 1h), never
	// longer than the negative TTL of the SOA that came with it.
	TTL time.Duration `yaml:"ttl"`
	// MaxEntries bounds the names kept (default 10000); the least
	// recently used go first.
	MaxEntries int `yaml:"max_entries"`
}

// Defaults and bounds of NXDomainConfig, and of the suffix probe.
const (
	DefaultNXDomainTTL        = 30 * time.Second
	MaxNXDomainTTL            = time.Hour
	DefaultNXDomainMaxEntries = 10000

	nxProbeTimeout = 4 * time.Second // bounds one suffix probe
	nxProbeRetry   = 5 * time.Second // wait after a failed probe, at most the TTL
)

// Enabled reports whether any suffix is configured: with none, the edge
// leaves the stage out.
func (c NXDomainConfig) Enabled() bool { return len(c.Suffixes) > 0 }

// Validate reports every problem of the section, each a *field.Error
// naming its field relative to the section ("suffixes[1]").
func (c NXDomainConfig) Validate() error {
	var errs []error
	seen := make(map[string]int)
	for i, s := range c.Suffixes {
		at := field.Index("suffixes", i)
		name, err := suffixName(s)
		if err != nil {
			errs = append(errs, field.Wrap(at, err))
			continue
		}
		if j, dup := seen[name]; dup {
			errs = append(errs, field.Errorf(at, "suffix %q repeats suffixes[%d]", s, j))
			continue
		}
		seen[name] = i
	}
	if c.TTL < 0 {
		errs = append(errs, field.Errorf("ttl", "ttl %s must not be negative", c.TTL))
	} else if c.TTL > MaxNXDomainTTL {
		errs = append(errs, field.Errorf("ttl", "ttl %s is above the maximum of %s", c.TTL, MaxNXDomainTTL))
	}
	if c.MaxEntries < 0 {
		errs = append(errs, field.Errorf("max_entries", "max_entries %d must not be negative", c.MaxEntries))
	}
	return errors.Join(errs...)
}

// suffixName returns s as a lower-case fully qualified name, or why it
// cannot be a suffix. Only host name characters (and '_') are accepted, so
// that the per-query suffix check is a plain byte comparison.
func suffixName(s string) (string, error) {
	switch {
	case s == "":
		return "", errors.New("empty suffix")
	case strings.HasPrefix(s, "*."):
		return "", fmt.Errorf("write %q without the leading \"*.\": a suffix covers every name below it", s)
	}
	name := dns.CanonicalName(s)
	if name == "." {
		return "", errors.New("the root would cover every name; list the domains to cache")
	}
	if _, ok := dns.IsDomainName(name); !ok || name[0] == '.' || strings.Contains(name, "..") {
		return "", fmt.Errorf("%q is not a valid domain name", s)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", fmt.Errorf("%q: a suffix may hold only letters, digits, '-' and '_'", s)
		}
	}
	return name, nil
}
