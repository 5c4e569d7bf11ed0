package edge

import (
	"errors"
	"net/netip"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/internal/yamlcheck"
)

// Warnings returns what is allowed but probably not meant, each with the
// line and column of the key at fault: `dnsedge check` prints them and
// serve logs them. A configuration that was not parsed from a file has
// none.
func (c *Config) Warnings() []Problem { return c.warnings }

// warn finds the warnings of a valid configuration.
func (c *Config) warn() []Problem {
	var errs []error
	errs = append(errs, c.udpWithoutTCP()...)
	errs = append(errs, c.plainWithoutACL()...)
	errs = append(errs, c.unusedGroups()...)
	inFile, inline := c.shadowedRules()
	errs = append(errs, inline)
	ps := c.doc.Place(errors.Join(errs...))
	for i := range ps {
		ps[i].Warning = true
	}
	return append(yamlcheck.Sort(ps), inFile...)
}

// udpWithoutTCP reports UDP listeners with no TCP listener on the same
// address and port: a client that gets a truncated answer (TC) retries
// over TCP there (RFC 7766 §5), and would find nobody. A TCP listener on
// the unspecified address of the same port counts. Listeners on port 0
// get a port of their own and are left out.
func (c *Config) udpWithoutTCP() []error {
	var tcp []netip.AddrPort
	for _, l := range c.Listeners {
		if k, ok := l.kind(); ok && k.Kind == pipeline.KindTCP {
			if ap, err := netip.ParseAddrPort(l.Address); err == nil {
				tcp = append(tcp, ap)
			}
		}
	}
	var errs []error
	for i, l := range c.Listeners {
		k, ok := l.kind()
		if !ok || k.Kind != pipeline.KindUDP {
			continue
		}
		ap, err := netip.ParseAddrPort(l.Address)
		if err != nil || ap.Port() == 0 {
			continue
		}
		covered := false
		for _, t := range tcp {
			if t.Port() == ap.Port() && (t.Addr() == ap.Addr() || t.Addr().IsUnspecified()) {
				covered = true
				break
			}
		}
		if !covered {
			errs = append(errs, field.Errorf(field.Index("listeners", i),
				"udp %s has no tcp listener on the same address: truncated answers have nowhere to go (clients retry them over TCP)", l.Address))
		}
	}
	return errs
}

// plainWithoutACL reports the plain listeners (udp, tcp, doh with h2c)
// on an address other than loopback that have no acl: they serve the
// private ranges only (listen.PrivateRanges), never the internet, which
// may surprise whoever gave them a public address.
func (c *Config) plainWithoutACL() []error {
	var errs []error
	for i, l := range c.Listeners {
		if _, ok := l.kind(); !ok || l.encrypted() || l.ACL != nil {
			continue
		}
		ap, err := netip.ParseAddrPort(l.Address)
		if err != nil || ap.Addr().Unmap().IsLoopback() {
			continue
		}
		errs = append(errs, field.Errorf(field.Index("listeners", i),
			"%s %s has no acl: it answers loopback, private (RFC 1918, RFC 4193) and link-local clients only, and REFUSED to the rest; list the clients to serve in acl", l.Proto, l.Address))
	}
	return errs
}

// unusedGroups reports the groups no query goes to: neither the default
// group nor one a policy rule routes to.
func (c *Config) unusedGroups() []error {
	def := c.defaultGroup()
	routed := make(map[string]bool)
	if c.policy != nil {
		for _, g := range c.policy.Groups() {
			routed[g] = true
		}
	}
	var errs []error
	for i, g := range c.Groups {
		if g.Name != def && g.Name != "" && !routed[g.Name] {
			errs = append(errs, field.Errorf(field.Join(field.Index("groups", i), "name"),
				"group %q is unused: it is not the default group %q and no policy rule routes to it", g.Name, def))
		}
	}
	return errs
}

// defaultGroup returns the name of the group every query goes to: the
// one named DefaultGroup, else the first.
func (c *Config) defaultGroup() string {
	for _, g := range c.Groups {
		if g.Name == DefaultGroup {
			return DefaultGroup
		}
	}
	if len(c.Groups) > 0 {
		return c.Groups[0].Name
	}
	return ""
}
