package cache

import (
	"errors"
	"time"

	"github.com/dnsedge/dnsedge/edge/cache/l2"
	"github.com/dnsedge/dnsedge/internal/field"
)

// Spec is the cache section of the configuration file. Every field left
// out takes the default of Config, except ServfailTTL (see
// DefaultServfailTTL); the cache and serve-stale are on unless turned off.
type Spec struct {
	// Enabled: false turns the cache off; it is on when absent.
	Enabled     *bool         `yaml:"enabled"`
	MaxEntries  int           `yaml:"max_entries"`
	MaxBytes    int64         `yaml:"max_bytes"`
	MinTTL      time.Duration `yaml:"min_ttl"`
	MaxTTL      time.Duration `yaml:"max_ttl"`
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// ServfailTTL keeps SERVFAIL answers and failures to reach any
	// upstream briefly (RFC 9520); default DefaultServfailTTL, 0s turns
	// it off.
	ServfailTTL *time.Duration `yaml:"servfail_ttl"`
	// Serve-stale (RFC 8767), on unless serve_stale is false.
	ServeStale           *bool         `yaml:"serve_stale"`
	MaxStale             time.Duration `yaml:"max_stale"`
	StaleTTL             time.Duration `yaml:"stale_ttl"`
	ClientTimeout        time.Duration `yaml:"client_timeout"`
	FailureRecheck       time.Duration `yaml:"failure_recheck"`
	StaleWhileRevalidate time.Duration `yaml:"stale_while_revalidate"`
	// Prefetch refreshes popular entries before they expire; on unless
	// false.
	Prefetch *bool `yaml:"prefetch"`
	// L2 is the shared cache in Redis under this one; off unless its
	// redis.address is set.
	L2 l2.Spec `yaml:"l2"`
}

// DefaultServfailTTL is how long SERVFAIL answers are cached when the
// configuration file does not say. (Config's zero value keeps none: a
// program building a Cache itself opts in.)
const DefaultServfailTTL = 5 * time.Second

// On reports whether the cache runs: unless enabled is false.
func (s Spec) On() bool { return s.Enabled == nil || *s.Enabled }

// Config returns the cache configuration the section describes, every
// default filled in.
func (s Spec) Config() Config { return s.config().withDefaults() }

// config maps the section onto Config, defaults of Config left zero.
func (s Spec) config() Config {
	cfg := Config{
		MaxEntries: s.MaxEntries, MaxBytes: s.MaxBytes,
		MinTTL: s.MinTTL, MaxTTL: s.MaxTTL, NegativeTTL: s.NegativeTTL,
		ServfailTTL:  DefaultServfailTTL,
		DisableStale: s.ServeStale != nil && !*s.ServeStale,
		MaxStale:     s.MaxStale, StaleTTL: s.StaleTTL,
		ClientTimeout: s.ClientTimeout, FailureRecheck: s.FailureRecheck,
		StaleWhileRevalidate: s.StaleWhileRevalidate,
		DisablePrefetch:      s.Prefetch != nil && !*s.Prefetch,
	}
	if s.ServfailTTL != nil {
		cfg.ServfailTTL = *s.ServfailTTL
	}
	return cfg
}

// Validate reports every problem of the section joined, each a
// *field.Error at a path relative to the section ("max_ttl"). The checks
// are those of New, plus min_ttl above an explicit max_ttl.
func (s Spec) Validate() error {
	errs := s.config().problems()
	if s.MaxTTL > 0 && s.MinTTL > s.MaxTTL {
		errs = append(errs, field.Errorf("min_ttl", "min_ttl %s is above max_ttl %s", s.MinTTL, s.MaxTTL))
	}
	if !s.On() && s.L2.On() {
		errs = append(errs, field.Errorf("l2", "the shared cache works under the cache, which enabled: false turns off"))
	}
	if err := s.L2.Validate(); err != nil {
		errs = append(errs, field.Prefix("l2", err))
	}
	return errors.Join(errs...)
}
