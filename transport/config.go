package transport

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/internal/field"
)

// Config is the configuration section transport owns: upstreams, the
// groups that race them, bootstrap resolvers and path health.
type Config struct {
	Upstreams []UpstreamSpec `yaml:"upstreams"`
	Groups    []GroupSpec    `yaml:"groups"`
	// Bootstrap lists resolvers (ip:port, port 53 by default) used to
	// resolve upstream host names.
	Bootstrap []string   `yaml:"bootstrap"`
	Health    HealthSpec `yaml:"health"`
}

// UpstreamSpec is one upstream as written in the configuration.
type UpstreamSpec struct {
	Name   string `yaml:"name"`
	URL    string `yaml:"url"`
	Family string `yaml:"family"` // ipv4 | ipv6 | both (default)
	Prefer string `yaml:"prefer"` // family tried first: ipv6 (default) | ipv4

	// The fields below apply to tls://, https:// and quic:// only.

	// TLSServerName is sent as SNI and is the name the server's
	// certificate must carry; default the URL's host (for an IP literal,
	// the certificate must carry it as an IP SAN).
	TLSServerName string `yaml:"tls_server_name"`
	// SPKI lists base64 SHA-256 SPKI pins (RFC 7469 §2.4). When set they
	// replace CA verification: a certificate the server sends must match
	// one, the leaf must chain to it and carry the server name.
	SPKI []string `yaml:"spki"`
	// CAFile is a PEM file of roots used instead of the system pool.
	CAFile string `yaml:"ca_file"`
	// HTTP3 sends DoH over HTTP/3 (https only).
	HTTP3 bool `yaml:"http3"`
	// TSIGKey names a key of the tsig section: every query to the
	// upstream is signed with it and every reply must verify (RFC 8945),
	// over any protocol. The edge checks that the key exists.
	TSIGKey string `yaml:"tsig_key"`
}

// TLSOptions returns the TLS settings the spec describes, reading CAFile.
// Validate reports the same problems with their field.
func (u UpstreamSpec) TLSOptions() (TLSOptions, error) {
	o := TLSOptions{ServerName: u.TLSServerName}
	for _, s := range u.SPKI {
		p, err := ParseSPKIPin(s)
		if err != nil {
			return TLSOptions{}, err
		}
		o.Pins = append(o.Pins, p)
	}
	if u.CAFile != "" {
		pool, err := LoadCAFile(u.CAFile)
		if err != nil {
			return TLSOptions{}, err
		}
		o.RootCAs = pool
	}
	return o, nil
}

// validateTLS reports problems with the TLS fields of u, whose URL parsed
// to ep.
func (u UpstreamSpec) validateTLS(at string, ep Endpoint) []error {
	var errs []error
	if !ep.Encrypted() {
		for _, f := range []struct {
			name string
			set  bool
		}{{"tls_server_name", u.TLSServerName != ""}, {"spki", len(u.SPKI) > 0}, {"ca_file", u.CAFile != ""}, {"http3", u.HTTP3}} {
			if f.set {
				errs = append(errs, field.Errorf(at+"."+f.name, "only applies to tls://, https:// and quic:// upstreams, not %s://", ep.Scheme))
			}
		}
		return errs
	}
	if u.HTTP3 && ep.Scheme != "https" {
		errs = append(errs, field.Errorf(at+".http3", "only applies to https:// upstreams, not %s://", ep.Scheme))
	}
	if n := u.TLSServerName; n != "" {
		if _, err := netip.ParseAddr(n); err != nil {
			if _, ok := dns.IsDomainName(n); !ok || strings.ContainsAny(n, " /:*") || strings.HasSuffix(n, ".") {
				errs = append(errs, field.Errorf(at+".tls_server_name", "%q is neither a host name nor an IP address", n))
			}
		}
	}
	for i, s := range u.SPKI {
		if _, err := ParseSPKIPin(s); err != nil {
			errs = append(errs, field.Wrap(fmt.Sprintf("%s.spki[%d]", at, i), err))
		}
	}
	if u.CAFile != "" {
		if len(u.SPKI) > 0 {
			errs = append(errs, field.Errorf(at+".ca_file", "has no effect with spki: pins replace CA verification"))
		} else if _, err := LoadCAFile(u.CAFile); err != nil {
			errs = append(errs, field.Wrap(at+".ca_file", err))
		}
	}
	return errs
}

// GroupSpec is one group as written in the configuration.
type GroupSpec struct {
	Name      string   `yaml:"name"`
	Strategy  string   `yaml:"strategy"`
	Upstreams []string `yaml:"upstreams"`
	// AttemptDelay caps the hedge delay, the wait for one path before the
	// next is started (default 250ms); MinAttemptDelay is its floor
	// (default 10ms, RFC 8305 §5). HedgeFactor is k in the delay
	// k·SRTT + 4·RTTVAR of the path waited on (default 2).
	AttemptDelay    time.Duration `yaml:"attempt_delay"`
	MinAttemptDelay time.Duration `yaml:"min_attempt_delay"`
	HedgeFactor     float64       `yaml:"hedge_factor"`
	// Within an upstream the family with the lower measured RTT goes
	// first when the other's is more than FamilyRTTRatio times and more
	// than FamilyRTTMargin above it (defaults 2 and 10ms); the upstream's
	// prefer decides otherwise.
	FamilyRTTRatio  float64       `yaml:"family_rtt_ratio"`
	FamilyRTTMargin time.Duration `yaml:"family_rtt_margin"`
}

// RaceConfig returns the race configuration the spec describes.
func (g GroupSpec) RaceConfig() RaceConfig {
	return RaceConfig{
		MaxAttemptDelay: g.AttemptDelay, MinAttemptDelay: g.MinAttemptDelay, HedgeFactor: g.HedgeFactor,
		FamilyRatio: g.FamilyRTTRatio, FamilyMargin: g.FamilyRTTMargin,
	}.withDefaults()
}

// HealthSpec tunes every path's health; see HealthConfig for defaults.
type HealthSpec struct {
	FailureThreshold int           `yaml:"failure_threshold"`
	Cooldown         time.Duration `yaml:"cooldown"`
	MaxCooldown      time.Duration `yaml:"max_cooldown"`
	MinTimeout       time.Duration `yaml:"min_timeout"`
	MaxTimeout       time.Duration `yaml:"max_timeout"`
	InitialTimeout   time.Duration `yaml:"initial_timeout"`
	StaleAfter       time.Duration `yaml:"stale_after"`
	DemoteLoss       float64       `yaml:"demote_loss"`
	LossHalfLife     time.Duration `yaml:"loss_half_life"`
	// ProbeInterval, ProbeName and ProbeType tune background probes of
	// idle paths (see ProbeSpec); a negative interval turns them off.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	ProbeName     string        `yaml:"probe_name"`
	ProbeType     string        `yaml:"probe_type"`
}

// HealthConfig returns the health configuration the spec describes.
func (h HealthSpec) HealthConfig() HealthConfig {
	return HealthConfig{
		FailureThreshold: h.FailureThreshold, Cooldown: h.Cooldown, MaxCooldown: h.MaxCooldown,
		MinTimeout: h.MinTimeout, MaxTimeout: h.MaxTimeout, InitialTimeout: h.InitialTimeout,
		StaleAfter: h.StaleAfter, DemoteLoss: h.DemoteLoss, LossHalfLife: h.LossHalfLife,
	}.withDefaults()
}

// ProbeSpec returns the probe configuration the spec describes. Validate
// reports a bad name or type; here they fall back to the defaults.
func (h HealthSpec) ProbeSpec() ProbeSpec {
	p := ProbeSpec{Interval: h.ProbeInterval}
	if _, ok := dns.IsDomainName(h.ProbeName); ok && h.ProbeName != "" {
		p.Name = dns.Fqdn(h.ProbeName)
	}
	if t, ok := dns.StringToType[strings.ToUpper(h.ProbeType)]; ok {
		p.Type = t
	}
	return p.withDefaults()
}

// Validate reports every problem of the section, each a *field.Error. The
// references group → upstream are checked here: a group naming a missing
// upstream, duplicate names and empty groups are errors.
func (c *Config) Validate() error {
	var errs []error
	names := make(map[string]int)
	for i, u := range c.Upstreams {
		at := fmt.Sprintf("upstreams[%d]", i)
		switch {
		case u.Name == "":
			errs = append(errs, field.Errorf(at, "upstream needs a name"))
		case strings.ContainsAny(u.Name, " /\t"):
			errs = append(errs, field.Errorf(at+".name", "name %q must not contain spaces or slashes", u.Name))
		default:
			if j, dup := names[u.Name]; dup {
				errs = append(errs, field.Errorf(at+".name", "upstream %q already defined at upstreams[%d]", u.Name, j))
			}
			names[u.Name] = i
		}
		pin, err := ParsePin(u.Family)
		if err != nil {
			errs = append(errs, field.Wrap(at+".family", err))
		}
		if u.Prefer != "" && u.Prefer != "ipv4" && u.Prefer != "ipv6" {
			errs = append(errs, field.Errorf(at+".prefer", "unknown family %q (want ipv4 or ipv6)", u.Prefer))
		}
		if u.URL == "" {
			errs = append(errs, field.Errorf(at, "upstream needs a url"))
			continue
		}
		ep, err := ParseEndpoint(u.URL)
		if err != nil {
			errs = append(errs, field.Wrap(at+".url", err))
			continue
		}
		if ep.Addr.IsValid() && !pin.Allows(FamilyOf(ep.Addr)) {
			errs = append(errs, field.Errorf(at+".family", "address %s is %s but family is %s", ep.Addr, FamilyOf(ep.Addr), pin))
		}
		errs = append(errs, u.validateTLS(at, ep)...)
	}
	groups := make(map[string]bool)
	for i, g := range c.Groups {
		at := fmt.Sprintf("groups[%d]", i)
		if g.Name == "" {
			errs = append(errs, field.Errorf(at, "group needs a name"))
		} else if groups[g.Name] {
			errs = append(errs, field.Errorf(at+".name", "group %q already defined", g.Name))
		}
		groups[g.Name] = true
		if _, err := NewStrategy(g.Strategy); err != nil {
			errs = append(errs, field.Wrap(at+".strategy", err))
		}
		if len(g.Upstreams) == 0 {
			errs = append(errs, field.Errorf(at+".upstreams", "group %q has no upstreams", g.Name))
		}
		for j, n := range g.Upstreams {
			if _, ok := names[n]; !ok {
				errs = append(errs, field.Errorf(fmt.Sprintf("%s.upstreams[%d]", at, j), "no upstream named %q", n))
			}
		}
		for _, d := range []struct {
			name string
			v    time.Duration
		}{{"attempt_delay", g.AttemptDelay}, {"min_attempt_delay", g.MinAttemptDelay}, {"family_rtt_margin", g.FamilyRTTMargin}} {
			if d.v < 0 {
				errs = append(errs, field.Errorf(at+"."+d.name, "must not be negative"))
			}
		}
		if g.MinAttemptDelay > 0 && g.AttemptDelay > 0 && g.MinAttemptDelay > g.AttemptDelay {
			errs = append(errs, field.Errorf(at+".min_attempt_delay", "min_attempt_delay %s is above attempt_delay %s", g.MinAttemptDelay, g.AttemptDelay))
		}
		if g.HedgeFactor < 0 {
			errs = append(errs, field.Errorf(at+".hedge_factor", "must not be negative"))
		}
		if g.FamilyRTTRatio != 0 && g.FamilyRTTRatio < 1 {
			errs = append(errs, field.Errorf(at+".family_rtt_ratio", "must be at least 1 (got %g)", g.FamilyRTTRatio))
		}
	}
	for i, b := range c.Bootstrap {
		if _, err := ParseBootstrap(b); err != nil {
			errs = append(errs, field.Wrap(fmt.Sprintf("bootstrap[%d]", i), err))
		}
	}
	errs = append(errs, field.Prefix("health", errors.Join(c.Health.validate()...)))
	return errors.Join(errs...)
}

// validate reports the problems of the health section, at paths relative
// to it.
func (h HealthSpec) validate() []error {
	var errs []error
	if h.FailureThreshold < 0 {
		errs = append(errs, field.Errorf("failure_threshold", "must not be negative"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"cooldown", h.Cooldown}, {"max_cooldown", h.MaxCooldown}, {"min_timeout", h.MinTimeout},
		{"max_timeout", h.MaxTimeout}, {"initial_timeout", h.InitialTimeout}, {"stale_after", h.StaleAfter},
		{"loss_half_life", h.LossHalfLife},
	} {
		if d.v < 0 {
			errs = append(errs, field.Errorf(d.name, "must not be negative"))
		}
	}
	if h.MinTimeout > 0 && h.MaxTimeout > 0 && h.MinTimeout > h.MaxTimeout {
		errs = append(errs, field.Errorf("min_timeout", "min_timeout %s is above max_timeout %s", h.MinTimeout, h.MaxTimeout))
	}
	if h.DemoteLoss < 0 || h.DemoteLoss >= 1 {
		errs = append(errs, field.Errorf("demote_loss", "must be a failure rate from 0 (default) to below 1, got %g", h.DemoteLoss))
	}
	if h.ProbeName != "" {
		if _, ok := dns.IsDomainName(h.ProbeName); !ok {
			errs = append(errs, field.Errorf("probe_name", "%q is not a domain name", h.ProbeName))
		}
	}
	if h.ProbeType != "" {
		if _, ok := dns.StringToType[strings.ToUpper(h.ProbeType)]; !ok {
			errs = append(errs, field.Errorf("probe_type", "unknown record type %q", h.ProbeType))
		}
	}
	if h.Cooldown > 0 && h.MaxCooldown > 0 && h.Cooldown > h.MaxCooldown {
		errs = append(errs, field.Errorf("cooldown", "cooldown %s is above max_cooldown %s", h.Cooldown, h.MaxCooldown))
	}
	return errs
}

// ParseBootstrap parses a bootstrap resolver address: "192.0.2.53",
// "192.0.2.53:5353", "[2001:db8::53]:53" or "udp://…" with an IP address.
func ParseBootstrap(s string) (netip.AddrPort, error) {
	s = strings.TrimPrefix(s, "udp://")
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	return netip.AddrPort{}, fmt.Errorf("bootstrap resolver %q must be an IP address with an optional port", s)
}
