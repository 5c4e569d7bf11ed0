package zone

import (
	"net/netip"
	"sort"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// tenants finds the tenant a query belongs to. It is built once from a
// validated configuration and never changes, so it is safe for concurrent
// use.
type tenants struct {
	names []string
	byID  map[string]int
	nets  []tenantNet // most specific first
}

type tenantNet struct {
	prefix netip.Prefix
	tenant int
}

// newTenants indexes specs, which Validate accepted.
func newTenants(specs []TenantSpec) tenants {
	t := tenants{names: make([]string, len(specs)), byID: make(map[string]int)}
	for i, s := range specs {
		t.names[i] = s.Name
		for _, id := range s.ClientIDs {
			t.byID[id] = i
		}
		for _, n := range s.Networks {
			if p, err := parseNetwork(n); err == nil {
				t.nets = append(t.nets, tenantNet{p, i})
			}
		}
	}
	sort.SliceStable(t.nets, func(i, j int) bool { return t.nets[i].prefix.Bits() > t.nets[j].prefix.Bits() })
	return t
}

// pick returns the index of req's tenant, -1 for none: the tenant owning
// req.ClientID, else the one with the most specific network containing
// the client's address (IPv4-mapped addresses unmapped, IPv6 zones ignored). Networks are
// scanned in order, which is cheap for the handful a deployment has.
func (t *tenants) pick(req *pipeline.Request) int {
	if req.ClientID != "" {
		if i, ok := t.byID[req.ClientID]; ok {
			return i
		}
	}
	if len(t.nets) == 0 {
		return -1
	}
	addr := req.Client.Addr().Unmap().WithZone("")
	if !addr.IsValid() {
		return -1
	}
	for _, n := range t.nets {
		if n.prefix.Contains(addr) {
			return n.tenant
		}
	}
	return -1
}
