package edge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/transport"
)

// DefaultGroup is the group every query goes to unless policy routes it
// elsewhere: the group named "default", or else the first group.
const DefaultGroup = "default"

// complete fills what the file left out: system upstreams and bootstrap
// resolvers from resolvConf, a default group over every upstream, and
// default limits. The cache section is defaulted by cache.Spec.Config.
func (c *Config) complete(resolvConf string) error {
	needSystem := len(c.Upstreams) == 0 && len(c.Groups) == 0
	needBootstrap := len(c.Bootstrap) == 0
	if needSystem || needBootstrap {
		servers, err := systemResolvers(resolvConf)
		if needSystem && err != nil {
			return fmt.Errorf("no upstreams configured and none found in %s: %w", resolvConf, err)
		}
		if needSystem {
			c.SystemUpstreams = true
			for i, s := range servers {
				c.Upstreams = append(c.Upstreams, transport.UpstreamSpec{
					Name: "system-" + strconv.Itoa(i+1), URL: "udp://" + s.String(),
				})
			}
		}
		if needBootstrap {
			for _, s := range servers {
				c.Bootstrap = append(c.Bootstrap, s.String())
			}
		}
	}
	if len(c.Groups) == 0 && len(c.Upstreams) > 0 {
		g := transport.GroupSpec{Name: DefaultGroup, Strategy: "sequential"}
		for _, u := range c.Upstreams {
			g.Upstreams = append(g.Upstreams, u.Name)
		}
		c.Groups = append(c.Groups, g)
	}
	c.Server = c.Server.WithDefaults()
	c.RateLimit = c.RateLimit.WithDefaults()
	c.ECS = c.ECS.WithDefaults()
	c.Tags = c.Tags.WithDefaults()
	c.Trace = c.Trace.WithDefaults()
	c.Dnstap = c.Dnstap.WithDefaults()
	c.DNSSEC = c.DNSSEC.WithDefaults()
	c.TSIG = c.TSIG.WithDefaults()
	c.completeAdmin()
	c.Drills = c.Drills.WithDefaults()
	c.Rollback = c.Rollback.WithDefaults()
	c.Consul = c.Consul.WithDefaults()
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	return nil
}

// systemResolvers reads the name servers of a resolv.conf file.
func systemResolvers(path string) ([]netip.AddrPort, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(cc.Port, 10, 16)
	if err != nil {
		port = 53
	}
	var out []netip.AddrPort
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(port)))
	}
	if len(out) == 0 {
		return nil, errors.New("no usable nameserver lines")
	}
	return out, nil
}

// Validate reports every problem of the configuration, each error naming
// its field so the loader can place it.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, field.Errorf(path, format, args...))
	}
	if len(c.Listeners) == 0 {
		add("listeners", "no listeners: dnsedge would serve nobody")
	}
	seen := make(map[string]int)
	needTLS := -1 // the first encrypted listener without a tls section
	for i, l := range c.Listeners {
		at := fmt.Sprintf("listeners[%d]", i)
		if _, ok := l.kind(); !ok && l.Proto == "" {
			add(at, "listener needs a proto (%s)", wordList(listen.KindNames(), "or"))
		} else if !ok {
			add(at+".proto", "unknown listener proto %q (want %s)", l.Proto, wordList(listen.KindNames(), "or"))
		}
		if _, err := netip.ParseAddrPort(l.Address); err != nil {
			add(at+".address", "listen address %q must be ip:port ([ip6]:port for IPv6)", l.Address)
		}
		socks := l.sockets()
		if strings.HasSuffix(l.Address, ":0") {
			// Each listener on port 0 gets a port of its own.
			socks = []string{l.Proto + " " + l.Address}
		}
		for _, sock := range socks {
			if j, dup := seen[sock]; dup {
				add(at, "%s is already listened on by listeners[%d]", sock, j)
			}
			seen[sock] = i
		}
		errs = append(errs, l.validate(at)...)
		if l.encrypted() && l.TLS == nil && needTLS < 0 {
			needTLS = i
		}
	}
	if c.TLS != nil {
		errs = append(errs, field.Prefix("tls", c.TLS.Validate()))
	}
	if needTLS >= 0 && c.TLS == nil {
		add(fmt.Sprintf("listeners[%d]", needTLS), "%s needs a certificate: set tls (cert_file and key_file, self_signed or acme) at the top level or on the listener", c.Listeners[needTLS].Proto)
	}
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Groups) == 0 {
		add("groups", "no upstream groups: nothing to forward to")
	}
	errs = append(errs, c.loops()...)
	errs = append(errs, field.Prefix("canary", c.Canary.WithDefaults().Validate()), field.Prefix("rollback", c.Rollback.Validate()))
	errs = append(errs, c.validatePolicy()...)
	if len(c.Bootstrap) == 0 {
		for i, u := range c.Upstreams {
			if ep, err := transport.ParseEndpoint(u.URL); err == nil && ep.Host != "" {
				add(fmt.Sprintf("upstreams[%d].url", i), "host name %q needs a bootstrap resolver: none is configured and none was found in %s", ep.Host, ResolvConf)
			}
		}
	}
	errs = append(errs, field.Prefix("server", c.Server.Validate()))
	errs = append(errs, field.Prefix("rate_limit", c.RateLimit.Validate()))
	errs = append(errs, field.Prefix("cache", c.Cache.Validate()))
	cs := c.Cache
	if cs.ClientTimeout > 0 && c.Server.QueryTimeout > 0 && cs.ClientTimeout >= c.Server.QueryTimeout {
		add("cache.client_timeout", "client_timeout %s must be below server.query_timeout %s, or stale answers come too late", cs.ClientTimeout, c.Server.QueryTimeout)
	}
	if err := c.Zone.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, field.Prefix("nxdomain_cache", c.NXDomain.Validate()))
	errs = append(errs, field.Prefix("dnssec", c.DNSSEC.Validate()))
	errs = append(errs, field.Prefix("ecs", c.ECS.Validate()))
	errs = append(errs, field.Prefix("tags", c.Tags.Validate()))
	errs = append(errs, field.Prefix("trace", c.Trace.Validate()))
	errs = append(errs, field.Prefix("dnstap", c.Dnstap.Validate()))
	errs = append(errs, field.Prefix("upgrade", c.Upgrade.Validate()))
	errs = append(errs, field.Prefix("tracing", c.Tracing.Validate()))
	errs = append(errs, field.Prefix("tsig", c.TSIG.Validate()))
	errs = append(errs, field.Prefix("consul", c.Consul.Validate()))
	if c.Consul.Policy.Enabled && (c.Policy != nil || c.PolicyFile != "") {
		add("consul.policy.enabled", "the policy comes from consul: leave out policy and policy_file")
	}
	for i, t := range c.Zone.Tenants {
		for j, k := range t.TSIGKeys {
			if _, ok := dns.IsDomainName(k); ok && k != "" && !c.TSIG.Has(k) {
				add(fmt.Sprintf("tenants[%d].tsig_keys[%d]", i, j), "no key %q in the tsig section", k)
			}
		}
	}
	for i, u := range c.Upstreams {
		if u.TSIGKey != "" && !c.TSIG.Has(u.TSIGKey) {
			add(field.Join(field.Index("upstreams", i), "tsig_key"), "no key %q in the tsig section", u.TSIGKey)
		}
	}
	for i, l := range c.Listeners {
		if l.TSIG == TSIGRequired && !c.TSIG.On() {
			add(field.Join(field.Index("listeners", i), "tsig"), "tsig: required needs a key in the tsig section")
		}
	}
	if c.Tags.OptionCode != 0 && c.Tags.OptionCode == c.Trace.OptionCode {
		add("trace.option_code", "option code %d is the tags' option code too", c.Trace.OptionCode)
	}
	errs = append(errs, c.validateAdmin()...)
	errs = append(errs, c.validateDrills()...)
	if a := c.Metrics.Address; a != "" {
		if _, err := netip.ParseAddrPort(a); err != nil {
			add("metrics.address", "metrics address %q must be ip:port", a)
		}
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		add("log.level", "%v", err)
	}
	return errors.Join(errs...)
}

// loops reports upstreams that are one of dnsedge's own listen addresses:
// forwarding there would send every query around in a circle.
func (c *Config) loops() []error {
	own := ownAddrs(c.ListenAddrs())
	var errs []error
	for i, u := range c.Upstreams {
		ep, err := transport.ParseEndpoint(u.URL)
		if err != nil || !ep.Addr.IsValid() {
			continue
		}
		if ap := netip.AddrPortFrom(ep.Addr, ep.Port); own(ap) {
			what := "upstream"
			if c.SystemUpstreams {
				what = "the system resolver from " + ResolvConf
			}
			errs = append(errs, field.Errorf(fmt.Sprintf("upstreams[%d].url", i),
				"%s %s is dnsedge's own listen address: forwarding there is a loop", what, ap))
		}
	}
	return errs
}

// ownAddrs returns a predicate for "this address reaches one of our
// listeners": the same address and port, or the same port on a listener
// bound to the unspecified address when the address is local.
func ownAddrs(listen []netip.AddrPort) func(netip.AddrPort) bool {
	var local []netip.Addr
	for _, l := range listen {
		if l.Addr().IsUnspecified() {
			if ifaddrs, err := net.InterfaceAddrs(); err == nil {
				for _, ia := range ifaddrs {
					if p, err := netip.ParsePrefix(ia.String()); err == nil {
						local = append(local, p.Addr().Unmap())
					}
				}
			}
			break
		}
	}
	return func(ap netip.AddrPort) bool {
		a := ap.Addr().Unmap()
		for _, l := range listen {
			if l.Port() != ap.Port() {
				continue
			}
			if l.Addr() == a {
				return true
			}
			if l.Addr().IsUnspecified() && (a.IsLoopback() || a.IsUnspecified() || slices.Contains(local, a)) {
				return true
			}
		}
		return false
	}
}

// validate checks the fields of one listener that depend on its proto.
func (l ListenerSpec) validate(at string) []error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, field.Errorf(at+"."+path, format, args...))
	}
	if k, ok := l.kind(); ok {
		for _, o := range l.options() {
			switch {
			case !o.set || k.Accepts(o.name):
			case !k.Encrypted && slices.Equal(listen.KindsWith(o.name), listen.KindsWith(listen.OptTLS)):
				// A key every encrypted kind takes, and only they.
				add(o.name, "%s listeners are not encrypted: %s applies to %s", l.Proto, o.name, wordList(listen.KindsWith(o.name), "and"))
			default:
				add(o.name, "only %s listeners take %s", wordList(listen.KindsWith(o.name), "or"), o.name)
			}
		}
	}
	if l.Path != "" && (!strings.HasPrefix(l.Path, "/") || strings.ContainsAny(l.Path, "?#{} ")) {
		add("path", "path %q must start with / and hold no query, braces or spaces", l.Path)
	}
	if l.Sockets < 0 || l.Sockets > 1024 {
		add("sockets", "sockets %d must be between 1 and 1024 (leave it out for one per CPU)", l.Sockets)
	}
	if l.ACL != nil && len(l.ACL) == 0 {
		add("acl", "an empty acl refuses every client: leave it out for the default, or write [0.0.0.0/0, \"::/0\"] to serve everybody")
	}
	for j, a := range l.ACL {
		if _, err := netip.ParsePrefix(a); err != nil {
			add(field.Index("acl", j), "%q is not a CIDR prefix (write it like 192.0.2.0/24; 0.0.0.0/0 and ::/0 open the listener)", a)
		}
	}
	switch l.TSIG {
	case "", TSIGOptional, TSIGRequired:
	default:
		add("tsig", "tsig %q must be %s or %s", l.TSIG, TSIGOptional, TSIGRequired)
	}
	if l.HTTP3 && l.H2C {
		add("http3", "http3 needs TLS, and h2c turns TLS off: pick one")
	}
	if l.H2C && l.TLS != nil {
		add("tls", "an h2c listener serves cleartext: the TLS proxy in front of it holds the certificate")
	}
	if l.ServerName != "" {
		if !isHostName(l.ServerName) {
			add("server_name", "%q is not a host name", l.ServerName)
		}
	}
	if l.TLS != nil {
		errs = append(errs, field.Prefix(at+".tls", l.TLS.Validate()))
	}
	return errs
}

// wordList writes names as "a, b and c" (conj "and") or "a, b or c".
func wordList(names []string, conj string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + conj + " " + names[len(names)-1]
}

// isHostName reports whether s is a host name: dot-separated labels of
// letters, digits and hyphens, none empty or longer than 63, with an
// optional final dot.
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
