package zone

import (
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/policy"
)

// tenants finds the tenant a query belongs to, with policy's client
// matcher, so that tenants and policy rules pick clients alike. It is
// built once from a validated configuration and never changes, so it is
// safe for concurrent use.
type tenants struct {
	names []string
	table *policy.Table[int]
	// keys are the TSIG keys of each tenant, nil for a tenant without;
	// byKey the tenant of each key.
	keys  []map[string]bool
	byKey map[string]int
}

// newTenants indexes specs, which Validate accepted.
func newTenants(specs []TenantSpec) tenants {
	t := tenants{names: make([]string, len(specs)), table: new(policy.Table[int]),
		keys: make([]map[string]bool, len(specs)), byKey: make(map[string]int)}
	for i, s := range specs {
		t.names[i] = s.Name
		for _, k := range s.TSIGKeys {
			if t.keys[i] == nil {
				t.keys[i] = make(map[string]bool)
			}
			k = dns.CanonicalName(k)
			t.keys[i][k] = true
			t.byKey[k] = i
		}
		for _, id := range s.ClientIDs {
			t.table.AddID(id, i)
		}
		for _, n := range s.Networks {
			if p, err := policy.ParseNetwork(n); err == nil {
				t.table.AddNetwork(p, i)
			}
		}
	}
	return t
}

// pick returns the index of req's tenant, -1 for none: the tenant owning
// req.ClientID, else the one with the most specific network containing
// the client's address (IPv4-mapped addresses unmapped, IPv6 zones
// ignored), else the one holding the TSIG key the query verified with.
// The cost does not grow with the number of networks.
func (t *tenants) pick(req *pipeline.Request) int {
	if i, ok := t.table.Lookup(req.ClientID, req.Client.Addr()); ok {
		return i
	}
	if req.TSIG == pipeline.TSIGVerified {
		if i, ok := t.byKey[req.TSIGKey]; ok {
			return i
		}
	}
	return -1
}

// authorized reports whether tenant i's zones may answer req: always
// for a tenant without keys, else only a query verified with one of its
// keys.
func (t *tenants) authorized(i int, req *pipeline.Request) bool {
	if t.keys[i] == nil {
		return true
	}
	return req.TSIG == pipeline.TSIGVerified && t.keys[i][req.TSIGKey]
}
