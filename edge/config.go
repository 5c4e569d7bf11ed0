// Package edge is the dnsedge server: configuration, building a generation
// of the pipeline, listeners, reload and lifecycle. It is the only package
// that knows listeners, pipeline, transport and policy together.
package edge

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/canary"
	"github.com/dnsedge/dnsedge/edge/consul"
	"github.com/dnsedge/dnsedge/edge/dnstap"
	"github.com/dnsedge/dnsedge/edge/drill"
	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/records"
	"github.com/dnsedge/dnsedge/edge/tracing"
	"github.com/dnsedge/dnsedge/edge/tsig"
	"github.com/dnsedge/dnsedge/edge/upgrade"
	"github.com/dnsedge/dnsedge/edge/validate"
	"github.com/dnsedge/dnsedge/edge/zone"
	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/internal/yamlcheck"
	"github.com/dnsedge/dnsedge/policy"
	edgetls "github.com/dnsedge/dnsedge/tls"
	"github.com/dnsedge/dnsedge/transport"
)

// Config is the whole configuration file. Each section is owned and
// validated by the package that uses it.
type Config struct {
	Listeners []ListenerSpec `yaml:"listeners"`
	// Server holds the limits shared by the listeners, defaulted and
	// checked by edge/listen.
	Server listen.Limits `yaml:"server"`
	// RateLimit limits the queries of each client on every listener,
	// defaulted and checked by edge/listen.
	RateLimit listen.RateLimit `yaml:"rate_limit"`
	// TLS is the certificate of the encrypted listeners (dot, doh, doq)
	// that do not name their own.
	TLS *edgetls.Spec `yaml:"tls"`
	// StateDir holds what dnsedge makes for itself: the self-signed CA
	// and certificate, ACME accounts and certificates. Default: see
	// DefaultStateDir.
	StateDir         string `yaml:"state_dir"`
	transport.Config `yaml:",inline"`
	// Cache is the answer cache, with serve-stale: on unless enabled is
	// false.
	Cache cache.Spec `yaml:"cache"`
	// Local, tenant and fallback zones: keys zones, tenants, fallback
	// and zone_poll_interval.
	Zone zone.Config `yaml:",inline"`
	// NXDomain remembers denials under the listed suffixes.
	NXDomain middleware.NXDomainConfig `yaml:"nxdomain_cache"`
	// DNSSEC validates answers inside the cache, with an audit log; off
	// unless validate is true.
	DNSSEC validate.Config `yaml:"dnssec"`
	// ECS is what is done with EDNS Client Subnet when no policy rule
	// decides; Tags and Trace name the EDNS options that carry tags and
	// trace ids upstream, and who may send tags.
	ECS   middleware.ECSConfig   `yaml:"ecs"`
	Tags  middleware.TagsConfig  `yaml:"tags"`
	Trace middleware.TraceConfig `yaml:"trace"`
	// Dnstap writes every query and answer as dnstap messages; off unless
	// it names a file or a socket.
	Dnstap dnstap.Config `yaml:"dnstap"`
	// Tracing exports a span per query and upstream attempt over OTLP;
	// off unless it names an endpoint.
	Tracing tracing.Config `yaml:"tracing"`
	// Policy holds the rules that route, split, tag and answer queries;
	// PolicyFile names a policy document of the same schema instead,
	// relative to the configuration file.
	Policy     *policy.Spec `yaml:"policy"`
	PolicyFile string       `yaml:"policy_file"`
	// TSIG holds the keys that authenticate queries, replies and
	// upstream exchanges (RFC 8945), and the fudge window.
	TSIG tsig.Config `yaml:"tsig"`
	// Consul answers names under its domain from Consul's health view,
	// and with policy.enabled takes the policy from Consul KV; off
	// unless it names an address.
	Consul  consul.Config `yaml:"consul"`
	Metrics MetricsSpec   `yaml:"metrics"`
	Log     LogSpec       `yaml:"log"`

	// Admin is the admin HTTP listener (the records API); off unless
	// the section is present.
	Admin *admin.Config `yaml:"admin"`
	// Records is how the zones with api: true are kept and what the
	// records API accepts.
	Records records.Config `yaml:"records"`
	// Drills bounds the drills run through the admin listener.
	Drills drill.Config `yaml:"drills"`
	// Canary is how a candidate configuration is tried on live queries
	// before it is committed; Rollback how long the configuration before
	// a reload is kept, and when dnsedge swaps back to it.
	Canary   canary.Config         `yaml:"canary"`
	Rollback canary.RollbackConfig `yaml:"rollback"`

	// Upgrade bounds a binary upgrade (drain, watch window, readiness)
	// and names the control socket `dnsedge upgrade` talks to.
	Upgrade upgrade.Config `yaml:"upgrade"`

	// SystemUpstreams is set when the upstreams were taken from
	// /etc/resolv.conf because the file named none.
	SystemUpstreams bool `yaml:"-"`

	// doc is where the configuration came from, so that CheckFiles and
	// Warnings can place what they find; nil when it was not parsed.
	doc      *yamlcheck.Doc
	warnings []Problem
	// policy is Policy or the policy file, compiled; nil for none.
	policy *policy.Policy
}

// ListenerSpec is one listening address.
type ListenerSpec struct {
	Proto   string `yaml:"proto"`   // a listen.ListenerKind: udp | tcp | dot | doh | doq
	Address string `yaml:"address"` // ip:port
	// Optional listeners that cannot be bound (no IPv6 on the host, say)
	// are skipped with a warning instead of failing the start.
	Optional bool `yaml:"optional"`

	// TLS overrides the top-level tls section for this listener (dot,
	// doh, doq).
	TLS *edgetls.Spec `yaml:"tls"`
	// ServerName is the name clients reach the listener by (dot, doq,
	// doh): an SNI of {id}.ServerName gives the client id {id}.
	ServerName string `yaml:"server_name"`
	// Padding pads replies to 468-byte blocks (RFC 8467) when the query
	// has EDNS; on by default for dot, doh and doq.
	Padding *bool `yaml:"padding"`
	// Path is where DoH answers; default /dns-query. Clients may append
	// /{client-id}.
	Path string `yaml:"path"`
	// HTTP3 also serves DoH over HTTP/3 on the same port (UDP) and
	// advertises it with Alt-Svc.
	HTTP3 bool `yaml:"http3"`
	// H2C serves DoH over cleartext HTTP/1.1 and HTTP/2, for use behind
	// a proxy that terminates TLS. Off by default.
	H2C bool `yaml:"h2c"`
	// ACL lists the client prefixes (CIDR) the listener serves; others
	// get REFUSED. Without it, plain listeners (udp, tcp, doh with h2c)
	// serve listen.PrivateRanges only and encrypted ones everybody;
	// [0.0.0.0/0, ::/0] opens a plain listener.
	ACL []string `yaml:"acl"`
	// TSIG is "required" for a listener that serves only queries signed
	// with a key of the tsig section (others get REFUSED), or
	// "optional" (the default): signed queries are verified, unsigned
	// ones served.
	TSIG string `yaml:"tsig"`
	// Sockets is the number of UDP sockets bound to the address with
	// SO_REUSEPORT, each with its own reader (udp only); default the
	// number of CPUs. A running listener keeps its count across reloads;
	// an upgrade binds the sockets a larger count adds.
	Sockets int `yaml:"sockets"`
}

// Values of ListenerSpec.TSIG.
const (
	TSIGOptional = "optional"
	TSIGRequired = "required"
)

// acl returns the parsed ACL prefixes, nil when the listener has none;
// invalid ones are skipped (Validate reports them).
func (l ListenerSpec) acl() []netip.Prefix {
	if l.ACL == nil {
		return nil
	}
	out := make([]netip.Prefix, 0, len(l.ACL))
	for _, s := range l.ACL {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// kind returns the listener's kind from listen's table; ok is false for
// an unknown proto (Validate reports it).
func (l ListenerSpec) kind() (listen.ListenerKind, bool) { return listen.LookupKind(l.Proto) }

// encrypted reports whether the listener speaks TLS or QUIC.
func (l ListenerSpec) encrypted() bool {
	k, ok := l.kind()
	return ok && k.Encrypted && !l.H2C
}

// sockets returns the sockets the listener binds, as "tcp ip:port" or
// "udp ip:port", so that two listeners on one socket are caught.
func (l ListenerSpec) sockets() []string {
	k, ok := l.kind()
	if !ok {
		return nil
	}
	var out []string
	for _, n := range k.Networks(l.HTTP3) {
		out = append(out, n+" "+l.Address)
	}
	return out
}

// options returns, for each listener-only key of listen.ListenerKind,
// whether the listener sets it.
func (l ListenerSpec) options() []struct {
	name string
	set  bool
} {
	return []struct {
		name string
		set  bool
	}{
		{listen.OptTLS, l.TLS != nil}, {listen.OptServerName, l.ServerName != ""}, {listen.OptPadding, l.Padding != nil},
		{listen.OptPath, l.Path != ""}, {listen.OptHTTP3, l.HTTP3}, {listen.OptH2C, l.H2C},
		{listen.OptSockets, l.Sockets != 0},
	}
}

// MetricsSpec configures the HTTP endpoint for /metrics, /healthz and
// /readyz.
type MetricsSpec struct {
	Address string `yaml:"address"` // ip:port; empty disables it
	// Pprof serves Go's profiler under /debug/pprof/ on the same address.
	Pprof bool `yaml:"pprof"`
}

// LogSpec configures logging.
type LogSpec struct {
	Level   string `yaml:"level"`   // debug | info | warn | error
	Queries bool   `yaml:"queries"` // log every query at info
}

//go:embed default.yaml
var defaultConfig []byte

// DefaultConfig returns the embedded default configuration: UDP and TCP
// on 127.0.0.1:8053 and [::1]:8053, forwarding to the resolvers of
// /etc/resolv.conf.
func DefaultConfig() (*Config, error) { return Parse("(default)", defaultConfig) }

// ResolvConf is where system resolvers are read from when a configuration
// names no upstreams or no bootstrap resolvers.
const ResolvConf = "/etc/resolv.conf"

// LoadFile reads and validates a configuration file.
func LoadFile(name string) (*Config, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(name, data)
}

// Problem is one thing wrong with a configuration, with where it is, or
// with Warning set, one thing that is allowed but probably not meant.
type Problem = yamlcheck.Problem

// ConfigError lists every problem found in a configuration.
type ConfigError = yamlcheck.Error

// Parse decodes a configuration strictly (an unknown key is an error),
// fills defaults, and validates every section. Every problem is reported,
// each with its line and column, sorted by line: values of the wrong type,
// unknown keys, and the problems of everything else in the file.
func Parse(name string, data []byte) (*Config, error) { return parse(name, data, ResolvConf) }

func parse(name string, data []byte, resolvConf string) (*Config, error) {
	cfg := new(Config)
	doc, err := yamlcheck.Decode(name, data, cfg)
	if err != nil {
		return nil, err
	}
	cfg.resolveZoneFiles(name)
	cfg.DNSSEC.ResolveFiles(filepath.Dir(name))
	cfg.Consul.ResolveFiles(filepath.Dir(name))
	readErr, perr := cfg.loadPolicyFile(name)
	var verr error
	if err := cfg.complete(resolvConf); err != nil {
		verr = err // not a field error: reported without a position
	} else {
		verr = errors.Join(cfg.Validate(), readErr)
	}
	if err := joinProblems(doc.Check(verr), perr); err != nil {
		return nil, err
	}
	cfg.doc = doc
	cfg.warnings = cfg.warn()
	return cfg, nil
}

// resolveZoneFiles makes relative zone file names relative to the
// directory of the configuration file, so that a configuration means the
// same wherever dnsedge is started.
func (c *Config) resolveZoneFiles(name string) {
	dir := filepath.Dir(name)
	fix := func(zs []zone.ZoneSpec) {
		for i := range zs {
			if f := zs[i].File; f != "" && !filepath.IsAbs(f) {
				zs[i].File = filepath.Join(dir, f)
			}
		}
	}
	fix(c.Zone.Zones)
	fix(c.Zone.Fallback)
	for i := range c.Zone.Tenants {
		fix(c.Zone.Tenants[i].Zones)
	}
}

// CheckFiles loads what the configuration names but Parse does not read,
// with the code serve loads it with: the certificate, key and CA files of
// the tls sections in use, the zone files, and the consul section's token
// and TLS files. It reports every problem
// with the line and column of the key naming the file (the zone file's
// own line is in the message): what serve or a reload would refuse.
// `dnsedge check` runs it, so that a unit's reload command can check
// before it signals.
func (c *Config) CheckFiles() error {
	var errs []error
	seen := make(map[*edgetls.Spec]bool)
	for i, l := range c.Listeners {
		spec := listenerTLS(c, l)
		if spec == nil || seen[spec] {
			continue
		}
		seen[spec] = true
		at := "tls"
		if l.TLS != nil {
			at = field.Join(field.Index("listeners", i), "tls")
		}
		errs = append(errs, field.Prefix(at, spec.CheckFiles()))
	}
	errs = append(errs, c.checkAdminFiles())
	errs = append(errs, field.Prefix("consul", c.Consul.CheckFiles()))
	if !c.Zone.Empty() {
		z, err := zone.New(c.Zone, nil, nil)
		if err == nil {
			err = z.Close()
		}
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	return &ConfigError{Problems: yamlcheck.Sort(c.doc.Place(err))}
}

// ListenAddrs returns the parsed listener addresses; invalid ones are
// skipped (Validate reports them).
func (c *Config) ListenAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range c.Listeners {
		if ap, err := netip.ParseAddrPort(l.Address); err == nil {
			out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	}
	return out
}
