package zone

import (
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
}

// newTenants indexes specs, which Validate accepted.
func newTenants(specs []TenantSpec) tenants {
	t := tenants{names: make([]string, len(specs)), table: new(policy.Table[int])}
	for i, s := range specs {
		t.names[i] = s.Name
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
// ignored). The cost does not grow with the number of networks.
func (t *tenants) pick(req *pipeline.Request) int {
	if i, ok := t.table.Lookup(req.ClientID, req.Client.Addr()); ok {
		return i
	}
	return -1
}
