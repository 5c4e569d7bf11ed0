// Package records keeps the zones handed to the records API (zones with
// `api: true`) and serves the API on the admin listener: GET and PATCH of
// /api/v1/zones/{zone}, its OpenAPI document, and the ExternalDNS webhook
// provider. Every change is made durable by a Store before it is
// acknowledged, written to an audit log, and given to the zone middleware
// at once (zone.Feed).
package records

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/dnsedge/dnsedge/internal/field"
)

// Defaults of the records section.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxTTL       = 604800 // one week
	DefaultWebhookTTL   = 300
	DefaultCompactAfter = 1000
	DefaultConsulPrefix = "dnsedge/records/"
)

// Stores of the records section.
const (
	StoreFile   = "file"   // FileStore under state_dir/records
	StoreConsul = "consul" // Consul KV, shared by every instance
)

// Config is the `records:` section: how API zones are kept and what the
// API accepts. Zones are kept by a FileStore under state_dir/records, or
// with store: consul in Consul KV under ConsulPrefix.
type Config struct {
	// Store is where API zones are kept: file (the default) or consul
	// (one key per zone under ConsulPrefix, through the top-level
	// consul section's agent, shared by every instance).
	Store string `yaml:"store"`
	// ConsulPrefix is the KV prefix of store: consul.
	ConsulPrefix string `yaml:"consul_prefix"`
	// MaxBodyBytes bounds a request body; a larger one gets 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxTTL is the largest TTL accepted; TTLs run from 0 to it.
	MaxTTL uint32 `yaml:"max_ttl"`
	// CompactAfter is how many journal entries a zone gathers before the
	// journal is folded into a snapshot and truncated.
	CompactAfter int `yaml:"compact_after"`
	// Webhook serves the ExternalDNS webhook provider; off unless set.
	Webhook *WebhookConfig `yaml:"webhook"`
}

// WebhookConfig is the listener of the ExternalDNS webhook provider.
// ExternalDNS sends no credentials, so the listener is loopback only (the
// pod's ExternalDNS container reaches it) and acts as one grant of the
// admin section, which must have write access: its zones are the domain
// filter.
type WebhookConfig struct {
	Address string `yaml:"address"` // loopback ip:port, e.g. 127.0.0.1:8888
	Grant   string `yaml:"grant"`   // the id of an admin token or client
	// DefaultTTL is the TTL of endpoints whose recordTTL is 0 (not set).
	DefaultTTL uint32 `yaml:"default_ttl"`
}

// WithDefaults returns c with its defaults filled in.
func (c Config) WithDefaults() Config {
	if c.Store == "" {
		c.Store = StoreFile
	}
	if c.ConsulPrefix == "" {
		c.ConsulPrefix = DefaultConsulPrefix
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.CompactAfter == 0 {
		c.CompactAfter = DefaultCompactAfter
	}
	if c.Webhook != nil && c.Webhook.DefaultTTL == 0 {
		w := *c.Webhook
		w.DefaultTTL = DefaultWebhookTTL
		c.Webhook = &w
	}
	return c
}

// Validate reports every problem of the section (after WithDefaults),
// each a *field.Error relative to it.
func (c *Config) Validate() error {
	var errs []error
	switch c.Store {
	case StoreFile, StoreConsul:
	default:
		errs = append(errs, field.Errorf("store", "store %q must be file or consul", c.Store))
	}
	if p := c.ConsulPrefix; strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		errs = append(errs, field.Errorf("consul_prefix", "prefix %q must end in / and not start with one", p))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, field.Errorf("max_body_bytes", "must be at least 1024"))
	}
	if c.MaxTTL > 1<<31-1 {
		errs = append(errs, field.Errorf("max_ttl", "must be at most 2147483647 (RFC 2181 §8)"))
	}
	if c.CompactAfter < 1 {
		errs = append(errs, field.Errorf("compact_after", "must be at least 1"))
	}
	if w := c.Webhook; w != nil {
		if ap, err := netip.ParseAddrPort(w.Address); err != nil {
			errs = append(errs, field.Errorf("webhook.address", "webhook address %q must be ip:port", w.Address))
		} else if !ap.Addr().IsLoopback() {
			errs = append(errs, field.Errorf("webhook.address", "webhook address %s must be loopback: ExternalDNS calls it without credentials", w.Address))
		}
		if w.Grant == "" {
			errs = append(errs, field.Errorf("webhook", "needs grant: the id of an admin token or client it acts as"))
		}
		if w.DefaultTTL > c.MaxTTL {
			errs = append(errs, field.Errorf("webhook.default_ttl", "must be at most max_ttl %d", c.MaxTTL))
		}
	}
	return errors.Join(errs...)
}
