package zone

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/policy"
)

// DefaultPollInterval is how often zone files are checked for changes when
// Config.PollInterval is zero.
const DefaultPollInterval = 3 * time.Second

// Config is the configuration section of local zones. The server's
// configuration inlines it; decoding is strict there.
type Config struct {
	// Zones are answered for every client.
	Zones []ZoneSpec `yaml:"zones"`
	// Tenants have zones of their own, answered before the shared ones
	// for the clients of the tenant.
	Tenants []TenantSpec `yaml:"tenants"`
	// Fallback zones answer only when every upstream path failed.
	Fallback []ZoneSpec `yaml:"fallback"`
	// PollInterval is how often zone files are checked for changes;
	// default DefaultPollInterval.
	PollInterval time.Duration `yaml:"zone_poll_interval"`
}

// ZoneSpec is one zone as written in the configuration: its origin and
// either a master file or inline records.
type ZoneSpec struct {
	Origin string `yaml:"origin"`
	// File is an RFC 1035 master file, read by New and watched for
	// changes; see Parse.
	File string `yaml:"file"`
	// Records are inline records, see FromRecords. Exactly one of File
	// and Records is set, unless API is.
	Records []string `yaml:"records"`
	// API hands the zone to the records API of the admin listener: its
	// records are what the API's store holds (empty at first, with an
	// SOA of serial 1), and neither File nor Records may be set. Only
	// shared zones (the zones list) may be API zones; see Zones.Follow.
	API bool `yaml:"api"`
}

// APIOrigins returns the canonical origins of the shared zones handed to
// the records API, in the order of the configuration.
func (c *Config) APIOrigins() []string {
	var out []string
	for _, s := range c.Zones {
		if s.API {
			if o, err := canonOrigin(s.Origin); err == nil {
				out = append(out, o)
			}
		}
	}
	return out
}

// TenantSpec is one tenant: the clients it owns and their zones. A query
// belongs to the tenant whose client id matches exactly, else to the one
// with the most specific network containing the client's address.
type TenantSpec struct {
	Name string `yaml:"name"`
	// ClientIDs are the client ids of the DoH path or the DoT/DoQ SNI
	// label (pipeline.Request.ClientID).
	ClientIDs []string `yaml:"client_ids"`
	// Networks are source CIDRs; a bare address stands for itself alone.
	Networks []string   `yaml:"networks"`
	Zones    []ZoneSpec `yaml:"zones"`
	// TSIGKeys, when set, are the only keys (of the tsig section) whose
	// verified queries the tenant's zones answer: any other query for a
	// name in them is REFUSED, so that a tenant's key never reaches
	// another tenant's zone, nor an unsigned query this one's. A query
	// signed with one of them belongs to the tenant even without a
	// matching client id or network. A key belongs to one tenant only.
	TSIGKeys []string `yaml:"tsig_keys"`
}

// Empty reports whether c configures no zone, tenant or fallback zone.
func (c *Config) Empty() bool {
	return len(c.Zones) == 0 && len(c.Tenants) == 0 && len(c.Fallback) == 0
}

// Validate reports every problem of the section, each a *field.Error, all
// joined: origins that are not domain names or appear twice in one list,
// zones with both or neither of file and records, inline records that do
// not parse or do not make a zone (reported at the record), tenants
// without a unique name, without client ids and networks, or without
// zones, networks that do not parse, client ids and networks claimed by
// two tenants, and a negative poll interval. Zone files are not read:
// their problems are reported by New, with file and line.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, validateZones("zones", c.Zones, true)...)
	errs = append(errs, validateZones("fallback", c.Fallback, false)...)
	names := make(map[string]int)
	ids := make(map[string]string)
	nets := make(map[netip.Prefix]string)
	keys := make(map[string]string)
	for i, t := range c.Tenants {
		at := fmt.Sprintf("tenants[%d]", i)
		if t.Name == "" {
			errs = append(errs, field.Errorf(at, "tenant needs a name"))
		} else if j, dup := names[t.Name]; dup {
			errs = append(errs, field.Errorf(at+".name", "tenant %q already defined at tenants[%d]", t.Name, j))
		} else {
			names[t.Name] = i
		}
		if len(t.ClientIDs) == 0 && len(t.Networks) == 0 && len(t.TSIGKeys) == 0 {
			errs = append(errs, field.Errorf(at, "tenant %q needs client_ids, networks or tsig_keys", t.Name))
		}
		for j, k := range t.TSIGKeys {
			f := fmt.Sprintf("%s.tsig_keys[%d]", at, j)
			if _, ok := dns.IsDomainName(k); !ok || k == "" {
				errs = append(errs, field.Errorf(f, "key name %q is not a domain name", k))
				continue
			}
			name := dns.CanonicalName(k)
			if by, dup := keys[name]; dup {
				errs = append(errs, field.Errorf(f, "key %q already belongs to %s", k, by))
				continue
			}
			keys[name] = f
		}
		for j, id := range t.ClientIDs {
			f := fmt.Sprintf("%s.client_ids[%d]", at, j)
			if id == "" {
				errs = append(errs, field.Errorf(f, "client id is empty"))
				continue
			}
			if by, dup := ids[id]; dup {
				errs = append(errs, field.Errorf(f, "client id %q already belongs to %s", id, by))
				continue
			}
			ids[id] = f
		}
		for j, n := range t.Networks {
			f := fmt.Sprintf("%s.networks[%d]", at, j)
			p, err := policy.ParseNetwork(n)
			if err != nil {
				errs = append(errs, field.Wrap(f, err))
				continue
			}
			if by, dup := nets[p]; dup {
				errs = append(errs, field.Errorf(f, "network %s already belongs to %s", p, by))
				continue
			}
			nets[p] = f
		}
		if len(t.Zones) == 0 {
			errs = append(errs, field.Errorf(at+".zones", "tenant %q has no zones", t.Name))
		}
		errs = append(errs, validateZones(at+".zones", t.Zones, false)...)
	}
	if c.PollInterval < 0 {
		errs = append(errs, field.Errorf("zone_poll_interval", "must not be negative"))
	}
	return errors.Join(errs...)
}

// validateZones reports the problems of the zone list at path at; api
// tells whether the list may hold API zones.
func validateZones(at string, specs []ZoneSpec, api bool) []error {
	var errs []error
	origins := make(map[string]int)
	for i, s := range specs {
		p := fmt.Sprintf("%s[%d]", at, i)
		o, err := canonOrigin(s.Origin)
		switch {
		case s.Origin == "":
			errs = append(errs, field.Errorf(p, "zone needs an origin"))
		case err != nil:
			errs = append(errs, field.Wrap(p+".origin", err))
		default:
			if j, dup := origins[o]; dup {
				errs = append(errs, field.Errorf(p+".origin", "zone %s already defined at %s[%d]", o, at, j))
			}
			origins[o] = i
		}
		switch {
		case s.API && !api:
			errs = append(errs, field.Errorf(p+".api", "only shared zones (the zones list) can be kept by the records API"))
		case s.API && (s.File != "" || len(s.Records) > 0):
			errs = append(errs, field.Errorf(p+".api", "zone %s is kept by the records API: it takes no file or records", s.Origin))
		case s.API:
		case s.File != "" && len(s.Records) > 0:
			errs = append(errs, field.Errorf(p, "zone %s sets both file and records; set one", s.Origin))
		case s.File == "" && len(s.Records) == 0:
			errs = append(errs, field.Errorf(p, "zone %s needs a file or records", s.Origin))
		case len(s.Records) > 0 && err == nil:
			_, rerrs := fromRecords(o, s.Records)
			for _, e := range rerrs {
				f := p + ".records"
				if e.at >= 0 {
					f = fmt.Sprintf("%s[%d]", f, e.at)
				}
				errs = append(errs, field.Wrap(f, e.err))
			}
		}
	}
	return errs
}
