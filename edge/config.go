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
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/dnstap"
	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/tracing"
	"github.com/dnsedge/dnsedge/edge/zone"
	"github.com/dnsedge/dnsedge/internal/field"
	edgetls "github.com/dnsedge/dnsedge/tls"
	"github.com/dnsedge/dnsedge/transport"
	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration file. Each section is owned and
// validated by the package that uses it.
type Config struct {
	Listeners []ListenerSpec `yaml:"listeners"`
	// Server holds the limits shared by the listeners, defaulted and
	// checked by edge/listen.
	Server listen.Limits `yaml:"server"`
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
	Metrics MetricsSpec    `yaml:"metrics"`
	Log     LogSpec        `yaml:"log"`

	// SystemUpstreams is set when the upstreams were taken from
	// /etc/resolv.conf because the file named none.
	SystemUpstreams bool `yaml:"-"`

	// file and pos are where the configuration came from, so that
	// CheckFiles and Warnings can place what they find.
	file     string
	pos      positions
	warnings []Problem
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
type Problem struct {
	File      string
	Line, Col int
	Msg       string
	Warning   bool
}

// String returns "file:line:col: message", with "warning: " before the
// message of a warning.
func (p Problem) String() string {
	msg := p.Msg
	if p.Warning {
		msg = "warning: " + msg
	}
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, msg)
}

// ConfigError lists every problem found in a configuration.
type ConfigError struct{ Problems []Problem }

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// Parse decodes a configuration strictly (an unknown key is an error),
// fills defaults, and validates every section. Every problem is reported,
// each with its line and column, sorted by line: values of the wrong type,
// unknown keys, and the problems of everything else in the file.
func Parse(name string, data []byte) (*Config, error) { return parse(name, data, ResolvConf) }

func parse(name string, data []byte, resolvConf string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &ConfigError{Problems: yamlProblems(name, err)}
	}
	pos := indexPositions(&root)
	var problems []Problem
	var decodePaths []string
	for _, p := range checkTree(&root, reflect.TypeFor[Config]()) {
		problems = append(problems, Problem{File: name, Line: p.line, Col: p.col, Msg: p.msg})
		if !p.keep {
			decodePaths = append(decodePaths, p.path)
		}
	}
	cfg := new(Config)
	if root.Kind != 0 {
		if err := root.Decode(cfg); err != nil {
			// What checkTree let through and yaml.v3 refuses (an alias
			// bomb, say) is reported as yaml.v3 words it.
			return nil, &ConfigError{Problems: sortProblems(append(problems, yamlProblems(name, err)...))}
		}
	}
	cfg.resolveZoneFiles(name)
	if err := cfg.complete(resolvConf); err != nil {
		problems = append(problems, Problem{File: name, Msg: err.Error()})
	} else if err := cfg.Validate(); err != nil {
		for _, p := range locate(name, pos, err) {
			if !underAny(p.path, decodePaths) {
				problems = append(problems, p.Problem)
			}
		}
	}
	if len(problems) > 0 {
		return nil, &ConfigError{Problems: sortProblems(problems)}
	}
	cfg.file, cfg.pos = name, pos
	cfg.warnings = cfg.warn()
	return cfg, nil
}

// underAny reports whether path is one of paths or below one of them: a
// validation problem there comes from a value already reported as being of
// the wrong type.
func underAny(path string, paths []string) bool {
	for _, p := range paths {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

// sortProblems orders problems by line and column; problems without a
// position come first, in the order found.
func sortProblems(ps []Problem) []Problem {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return ps
}

// yamlProblems turns a YAML decoding error into problems with lines.
func yamlProblems(name string, err error) []Problem {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var ps []Problem
	for _, m := range msgs {
		p := Problem{File: name, Msg: m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			p.Line, _ = strconv.Atoi(sm[1])
			p.Col, p.Msg = 1, sm[2]
		}
		ps = append(ps, p)
	}
	return ps
}

// positions maps a field path ("upstreams[2].url") to where it is.
type positions map[string][2]int

func indexPositions(root *yaml.Node) positions {
	pos := make(positions)
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
			return
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if _, dup := pos[p]; dup {
					continue // a key set twice: the first counts
				}
				pos[p] = [2]int{v.Line, v.Column}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				pos[p] = [2]int{c.Line, c.Column}
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return pos
}

// lookup finds the position of path or of its nearest ancestor.
func (p positions) lookup(path string) (int, int) {
	for path != "" {
		if lc, ok := p[path]; ok {
			return lc[0], lc[1]
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0, 0
}

// located is a validation problem and the field path it was placed by.
type located struct {
	Problem
	path string
}

// locate turns validation errors into problems, placing every error that
// names its field.
func locate(name string, pos positions, err error) []located {
	flat := field.Flatten(err)
	ps := make([]located, 0, len(flat))
	for _, e := range flat {
		p := located{Problem: Problem{File: name, Msg: e.Error()}}
		var fe interface{ FieldPath() string }
		if errors.As(e, &fe) {
			p.path = fe.FieldPath()
			p.Line, p.Col = pos.lookup(p.path)
		}
		ps = append(ps, p)
	}
	return ps
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
// the tls sections in use, and the zone files. It reports every problem
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
	var ps []Problem
	for _, p := range locate(c.file, c.pos, err) {
		ps = append(ps, p.Problem)
	}
	return &ConfigError{Problems: sortProblems(ps)}
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
