package middleware

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/field"
)

// ECSConfig is the ecs section: what is done with EDNS Client Subnet (RFC
// 7871) for a query no policy rule decided for (pipeline.ECSDefault).
type ECSConfig struct {
	// Default is the mode for queries of every listener but DoH: strip,
	// pass (forward what the client sent, add nothing), add (the
	// client's address cut to v4_bits or v6_bits, unless the client sent
	// a subnet) or replace (the client's address cut, whatever it sent).
	// Default pass.
	Default string `yaml:"default"`
	// DoH is the mode for DoH queries; default strip, since browsers'
	// queries should not tell upstreams where the user is.
	DoH string `yaml:"doh"`
	// V4Bits and V6Bits are the prefix lengths of an added subnet:
	// default 24 and 56 (RFC 7871 §11.1).
	V4Bits int `yaml:"v4_bits"`
	V6Bits int `yaml:"v6_bits"`
}

// ECS defaults.
const (
	DefaultECSMode   = "pass"
	DefaultECSDoH    = "strip"
	DefaultECSV4Bits = 24
	DefaultECSV6Bits = 56
)

// WithDefaults returns c with its empty fields set to the defaults.
func (c ECSConfig) WithDefaults() ECSConfig {
	if c.Default == "" {
		c.Default = DefaultECSMode
	}
	if c.DoH == "" {
		c.DoH = DefaultECSDoH
	}
	if c.V4Bits == 0 {
		c.V4Bits = DefaultECSV4Bits
	}
	if c.V6Bits == 0 {
		c.V6Bits = DefaultECSV6Bits
	}
	return c
}

// ParseECSMode returns the mode named s: strip, pass, add or replace.
func ParseECSMode(s string) (pipeline.ECSMode, error) {
	switch s {
	case "strip":
		return pipeline.ECSStrip, nil
	case "pass":
		return pipeline.ECSPass, nil
	case "add":
		return pipeline.ECSAdd, nil
	case "replace":
		return pipeline.ECSReplace, nil
	}
	return pipeline.ECSDefault, fmt.Errorf("unknown ecs mode %q (want strip, pass, add or replace)", s)
}

// Validate reports every problem of the section, each a *field.Error
// naming its field relative to the section.
func (c ECSConfig) Validate() error {
	var errs []error
	for _, m := range []struct{ name, v string }{{"default", c.Default}, {"doh", c.DoH}} {
		if m.v == "" {
			continue
		}
		if _, err := ParseECSMode(m.v); err != nil {
			errs = append(errs, field.Wrap(m.name, err))
		}
	}
	if c.V4Bits < 0 || c.V4Bits > 32 {
		errs = append(errs, field.Errorf("v4_bits", "v4_bits %d must be from 1 to 32", c.V4Bits))
	}
	if c.V6Bits < 0 || c.V6Bits > 128 {
		errs = append(errs, field.Errorf("v6_bits", "v6_bits %d must be from 1 to 128", c.V6Bits))
	}
	return errors.Join(errs...)
}

// EDNS option codes of the local/experimental range (RFC 6891 §9) that
// carry tags and trace ids upstream.
const (
	DefaultTagOptionCode   = 65001
	DefaultTraceOptionCode = 65002
	minLocalOptionCode     = 65001
	maxLocalOptionCode     = 65534
)

// TagsConfig is the tags section: the EDNS option that carries tags
// upstream (and from trusted clients), and who may send it.
type TagsConfig struct {
	// OptionCode is the EDNS option code of the tag option, in 65001–
	// 65534; default 65001. Its data is the tags, "key=value" each,
	// joined with commas (see ParseTags).
	OptionCode int `yaml:"option_code"`
	// Trusted lists the clients whose own tag options are taken: CIDR
	// prefixes ("10.0.0.0/8") or addresses of the client's source, or
	// client ids (the DoH path or DoT/DoQ SNI label). Everybody else's
	// tag options are dropped.
	Trusted []string `yaml:"trusted"`
}

// WithDefaults returns c with the default option code when it has none.
func (c TagsConfig) WithDefaults() TagsConfig {
	if c.OptionCode == 0 {
		c.OptionCode = DefaultTagOptionCode
	}
	return c
}

// Validate reports every problem of the section.
func (c TagsConfig) Validate() error {
	var errs []error
	if err := checkOptionCode(c.OptionCode); err != nil {
		errs = append(errs, field.Wrap("option_code", err))
	}
	seen := make(map[string]int)
	for i, t := range c.Trusted {
		at := field.Index("trusted", i)
		if _, _, err := parseTrusted(t); err != nil {
			errs = append(errs, field.Wrap(at, err))
			continue
		}
		if j, dup := seen[t]; dup {
			errs = append(errs, field.Errorf(at, "%q repeats trusted[%d]", t, j))
		}
		seen[t] = i
	}
	return errors.Join(errs...)
}

// parseTrusted reads one trusted entry: a prefix, an address, or a client
// id (letters, digits, '-', '_' and '.').
func parseTrusted(s string) (netip.Prefix, string, error) {
	if s == "" {
		return netip.Prefix{}, "", errors.New("empty trusted client")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, "", fmt.Errorf("%q is not a CIDR prefix", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, "", fmt.Errorf("%q has host bits set: write %s", s, p.Masked())
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())), "", nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), "", nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return netip.Prefix{}, "", fmt.Errorf("%q is neither an address, a CIDR prefix nor a client id", s)
		}
	}
	return netip.Prefix{}, s, nil
}

// unmapBits is how many bits an IPv4-mapped address's prefix loses when
// unmapped.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// TraceConfig is the trace section: the EDNS option that carries the
// trace id to upstreams other than DoH.
type TraceConfig struct {
	// OptionCode is the EDNS option code, in 65001–65534; default 65002.
	// Its data is the trace id in ASCII.
	OptionCode int `yaml:"option_code"`
}

// WithDefaults returns c with the default option code when it has none.
func (c TraceConfig) WithDefaults() TraceConfig {
	if c.OptionCode == 0 {
		c.OptionCode = DefaultTraceOptionCode
	}
	return c
}

// Validate reports every problem of the section.
func (c TraceConfig) Validate() error {
	if err := checkOptionCode(c.OptionCode); err != nil {
		return field.Wrap("option_code", err)
	}
	return nil
}

func checkOptionCode(code int) error {
	switch {
	case code == 0:
		return nil
	case code < minLocalOptionCode || code > maxLocalOptionCode:
		return fmt.Errorf("option code %d is outside the local/experimental range %d–%d (RFC 6891 §9)", code, minLocalOptionCode, maxLocalOptionCode)
	case code == LoopOptionCode:
		return fmt.Errorf("option code %d is the one dnsedge marks its own queries with", code)
	}
	return nil
}
