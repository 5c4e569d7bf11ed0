// Package validate is the DNSSEC validation stage (RFC 4033–4035, 6840):
// it sits just inside the answer cache, asks the next handler with DO and
// CD set, has the dnssec package judge the answer, and answers by the
// verdict: secure with AD for the queries that may see it, insecure and
// indeterminate without, bogus as SERVFAIL with an Extended DNS Error.
// Every validation is counted and, when configured, written to an audit
// log of JSON lines.
package validate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/dnsedge/dnsedge/dnssec"
	"github.com/dnsedge/dnsedge/internal/field"
)

// Config is the dnssec section of the configuration file.
type Config struct {
	// Enabled turns validation on (key validate); off by default.
	Enabled bool `yaml:"validate"`
	// TrustAnchors are DS or DNSKEY records in presentation format
	// ("example. 3600 IN DS 12345 13 2 ..."), or names of files holding
	// such records (an entry without a space is a file name, relative to
	// the configuration file). None means the root KSK built into the
	// dnssec package.
	TrustAnchors []string `yaml:"trust_anchors"`
	// NegativeTrustAnchors are names under which answers are not
	// validated (RFC 7646): they are insecure.
	NegativeTrustAnchors []string `yaml:"negative_trust_anchors"`
	// Skew is the leeway on signature inception and expiration; default
	// 5m, at most 24h.
	Skew time.Duration `yaml:"skew"`
	// MaxNSEC3Iterations: NSEC3 records with more iterations make the
	// answer insecure (RFC 9276 §3.2); default 150, at most 65535.
	MaxNSEC3Iterations *int `yaml:"max_nsec3_iterations"`
	// AuditLog writes one JSON line per validation; off unless it names
	// a path.
	AuditLog AuditConfig `yaml:"audit_log"`
}

// AuditConfig is the audit_log key of the dnssec section.
type AuditConfig struct {
	// Path is the file written, or "stdout"; empty turns the log off.
	Path string `yaml:"path"`
	// MaxSize is the size at which the file is rotated (path.1 is the
	// newest old file); default 100MB, at least 4KB. Not used for stdout.
	MaxSize Size `yaml:"max_size"`
	// MaxFiles is how many rotated files are kept; default 5, at most
	// 1000. -1 keeps none (the file is cut when it reaches MaxSize).
	MaxFiles int `yaml:"max_files"`
	// Buffer is how many lines may wait to be written; past it they are
	// dropped and counted (dnsedge_dnssec_audit_dropped_total), so that
	// a slow disk never holds up a query. Default 4096, at most 1048576.
	Buffer int `yaml:"buffer"`
}

// Defaults and bounds of Config.
const (
	DefaultSkew               = 5 * time.Minute
	MaxSkew                   = 24 * time.Hour
	DefaultMaxNSEC3Iterations = 150
	DefaultAuditMaxSize       = 100_000_000
	MinAuditMaxSize           = 4 << 10
	DefaultAuditMaxFiles      = 5
	MaxAuditMaxFiles          = 1000
	DefaultAuditBuffer        = 4096
	MaxAuditBuffer            = 1 << 20
	// Stdout is the audit log path that writes to standard output.
	Stdout = "stdout"
)

// On reports whether validation is on.
func (c Config) On() bool { return c.Enabled }

// WithDefaults returns c with every unset key given its default.
func (c Config) WithDefaults() Config {
	if c.Skew == 0 {
		c.Skew = DefaultSkew
	}
	if c.MaxNSEC3Iterations == nil {
		n := DefaultMaxNSEC3Iterations
		c.MaxNSEC3Iterations = &n
	}
	a := &c.AuditLog
	if a.Path != "" {
		if a.MaxSize == 0 {
			a.MaxSize = DefaultAuditMaxSize
		}
		if a.MaxFiles == 0 {
			a.MaxFiles = DefaultAuditMaxFiles
		}
		if a.Buffer == 0 {
			a.Buffer = DefaultAuditBuffer
		}
	}
	return c
}

// ResolveFiles makes the relative trust anchor file names of c relative
// to dir, the directory of the configuration file.
func (c *Config) ResolveFiles(dir string) {
	for i, a := range c.TrustAnchors {
		if isFileName(a) && !filepath.IsAbs(a) {
			c.TrustAnchors[i] = filepath.Join(dir, a)
		}
	}
}

// AnchorFiles returns the names of the trust anchor files c reads.
func (c Config) AnchorFiles() []string {
	var out []string
	for _, a := range c.TrustAnchors {
		if isFileName(a) {
			out = append(out, a)
		}
	}
	return out
}

// isFileName reports whether a trust anchor entry names a file rather
// than holding a record: a record has fields separated by spaces.
func isFileName(a string) bool { return !strings.ContainsAny(strings.TrimSpace(a), " \t") }

// Validate reports every problem of the section, each a *field.Error
// naming its field relative to the section ("trust_anchors[1]"). It reads
// the trust anchor files.
func (c Config) Validate() error {
	var errs []error
	for i, a := range c.TrustAnchors {
		if _, err := anchorEntry(a); err != nil {
			errs = append(errs, field.Wrap(field.Index("trust_anchors", i), err))
		}
	}
	for i, n := range c.NegativeTrustAnchors {
		if _, ok := dns.IsDomainName(n); !ok || n == "" {
			errs = append(errs, field.Errorf(field.Index("negative_trust_anchors", i), "%q is not a domain name", n))
		}
	}
	if c.Skew < 0 || c.Skew > MaxSkew {
		errs = append(errs, field.Errorf("skew", "skew %s must be from 0s to %s", c.Skew, MaxSkew))
	}
	if n := c.MaxNSEC3Iterations; n != nil && (*n < 0 || *n > 65535) {
		errs = append(errs, field.Errorf("max_nsec3_iterations", "max_nsec3_iterations %d must be from 0 to 65535", *n))
	}
	errs = append(errs, field.Prefix("audit_log", c.AuditLog.validate()))
	return errors.Join(errs...)
}

func (a AuditConfig) validate() error {
	var errs []error
	if a.Path == "" && (a.MaxSize != 0 || a.MaxFiles != 0 || a.Buffer != 0) {
		errs = append(errs, field.Errorf("path", "the audit log needs a path (a file or %q)", Stdout))
	}
	if a.MaxSize != 0 && a.MaxSize < MinAuditMaxSize {
		errs = append(errs, field.Errorf("max_size", "max_size %d must be at least %s", a.MaxSize, Size(MinAuditMaxSize)))
	}
	if a.MaxFiles < -1 || a.MaxFiles > MaxAuditMaxFiles {
		errs = append(errs, field.Errorf("max_files", "max_files %d must be from -1 to %d", a.MaxFiles, MaxAuditMaxFiles))
	}
	if a.Buffer < 0 || a.Buffer > MaxAuditBuffer {
		errs = append(errs, field.Errorf("buffer", "buffer %d must be from 1 to %d", a.Buffer, MaxAuditBuffer))
	}
	return errors.Join(errs...)
}

// Anchors returns the trust anchor records of c, reading the files it
// names; nil when c lists none (the dnssec package then uses the root's).
func (c Config) Anchors() ([]dns.RR, error) {
	var out []dns.RR
	for _, a := range c.TrustAnchors {
		rrs, err := anchorEntry(a)
		if err != nil {
			return nil, err
		}
		out = append(out, rrs...)
	}
	return out, nil
}

// dnssecConfig returns the validator's configuration (defaults applied).
func (c Config) dnssecConfig() (dnssec.Config, error) {
	c = c.WithDefaults()
	anchors, err := c.Anchors()
	if err != nil {
		return dnssec.Config{}, err
	}
	ntas := make([]string, len(c.NegativeTrustAnchors))
	for i, n := range c.NegativeTrustAnchors {
		ntas[i] = dns.CanonicalName(n)
	}
	return dnssec.Config{
		Anchors:            anchors,
		NegativeAnchors:    ntas,
		Skew:               c.Skew,
		MaxNSEC3Iterations: *c.MaxNSEC3Iterations,
	}, nil
}

// maxAnchorFile bounds a trust anchor file: anchors are a few records.
const maxAnchorFile = 1 << 20

// anchorEntry returns the records of one trust_anchors entry: the record
// it holds, or those of the file it names.
func anchorEntry(a string) ([]dns.RR, error) {
	if !isFileName(a) {
		rr, err := ParseAnchor(a)
		if err != nil {
			return nil, err
		}
		return []dns.RR{rr}, nil
	}
	fi, err := os.Stat(a)
	if err != nil {
		return nil, fmt.Errorf("read trust anchor file: %w", err)
	}
	if fi.Size() > maxAnchorFile {
		return nil, fmt.Errorf("trust anchor file %s is larger than %d bytes", a, maxAnchorFile)
	}
	data, err := os.ReadFile(a)
	if err != nil {
		return nil, fmt.Errorf("read trust anchor file: %w", err)
	}
	rrs, err := ParseAnchors(string(data))
	if err != nil {
		return nil, fmt.Errorf("trust anchor file %s: %w", a, err)
	}
	return rrs, nil
}

// ParseAnchor parses one trust anchor: a DS or DNSKEY record of class IN
// in presentation format. A DNSKEY must have the zone key flag (RFC 4034
// §2.1.1).
func ParseAnchor(s string) (dns.RR, error) {
	rr, err := dns.NewRR(s)
	if err != nil {
		return nil, fmt.Errorf("parse trust anchor: %w", err)
	}
	if rr == nil {
		return nil, errors.New("empty trust anchor")
	}
	if err := checkAnchor(rr); err != nil {
		return nil, err
	}
	return rr, nil
}

// maxAnchors bounds the records of a trust anchor file: a real one holds
// a few DS or DNSKEY records per zone.
const maxAnchors = 1000

// ParseAnchors parses the records of a trust anchor file (zone file
// syntax, comments allowed), each a DS or DNSKEY record of class IN;
// there must be at least one, and at most maxAnchors.
func ParseAnchors(text string) ([]dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "")
	zp.SetIncludeAllowed(false)
	var out []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if err := checkAnchor(rr); err != nil {
			return nil, err
		}
		if len(out) == maxAnchors {
			// A $GENERATE line makes up to 65,535 records of one line.
			return nil, fmt.Errorf("more than %d trust anchors", maxAnchors)
		}
		out = append(out, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("parse trust anchors: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("no DS or DNSKEY record")
	}
	return out, nil
}

func checkAnchor(rr dns.RR) error {
	h := rr.Header()
	if h.Class != dns.ClassINET {
		return fmt.Errorf("trust anchor for %s: class %s, want IN", h.Name, dns.Class(h.Class))
	}
	switch r := rr.(type) {
	case *dns.DS:
	case *dns.DNSKEY:
		if r.Flags&dns.ZONE == 0 {
			return fmt.Errorf("trust anchor for %s: DNSKEY without the zone key flag", h.Name)
		}
	default:
		return fmt.Errorf("trust anchor for %s: %s record, want DS or DNSKEY", h.Name, dns.Type(h.Rrtype))
	}
	return nil
}

// Size is a number of bytes, written in the configuration as an integer
// or with a unit: B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB
// (powers of 1024), like "100MB".
type Size int64

// UnmarshalYAML reads an integer or a string with a unit.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("a size must be a number of bytes or a string like 100MB")
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

func (s Size) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if s != 0 && int64(s)%u.n == 0 {
			return strconv.FormatInt(int64(s)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// maxSize bounds a Size: 1 TB is more than any audit file should be.
const maxSize = 1 << 40

// ParseSize parses a size: digits, then optionally a unit (see Size).
func ParseSize(v string) (Size, error) {
	s := strings.TrimSpace(v)
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 13 {
		return 0, fmt.Errorf("%q is not a size (write it like 100MB or 4096)", v)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (write it like 100MB or 4096)", v)
	}
	var mult int64
	switch strings.TrimSpace(s[i:]) {
	case "", "B":
		mult = 1
	case "KB":
		mult = 1e3
	case "MB":
		mult = 1e6
	case "GB":
		mult = 1e9
	case "KiB":
		mult = 1 << 10
	case "MiB":
		mult = 1 << 20
	case "GiB":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("%q: unknown unit %q (want B, KB, MB, GB, KiB, MiB or GiB)", v, strings.TrimSpace(s[i:]))
	}
	if n > maxSize/mult {
		return 0, fmt.Errorf("%q is larger than 1TiB", v)
	}
	return Size(n * mult), nil
}
