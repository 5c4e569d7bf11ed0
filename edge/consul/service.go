package consul

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Health states of an instance, as Consul aggregates its checks (the
// node's and the service's): critical and maintenance are never
// answered, warning only when only_passing is off.
const (
	statusPassing uint8 = iota + 1
	statusWarning
)

// instance is one service instance as answered: comparable, so that two
// views compare with ==, and holding nothing Consul churns on (check
// output, modify indexes).
type instance struct {
	node string // lower case
	// v4 and v6 are the addresses answered in A and AAAA; either may be
	// invalid (none of that family).
	v4, v6 netip.Addr
	// own is set when the service has an address of its own; its SRV
	// target is then HEX.addr… instead of NODE.node….
	own    bool
	port   uint16
	weight uint16 // Consul's passing or warning weight, by status
	status uint8
	// tags are the instance's tags, lower case, each followed by 0.
	tags string
}

// hasTag reports whether the instance carries tag (lower case).
func (i *instance) hasTag(tag string) bool {
	for t := range strings.SplitSeq(i.tags, "\x00") {
		if t == tag {
			return true
		}
	}
	return false
}

// instances converts Consul's health entries into a sorted list of the
// instances that may be answered: passing ones and warning ones (the
// caller filters those), with at least one address.
func instances(entries []*api.ServiceEntry) []instance {
	out := make([]instance, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil || e.Node == nil {
			continue
		}
		var st uint8
		switch e.Checks.AggregatedStatus() {
		case api.HealthPassing:
			st = statusPassing
		case api.HealthWarning:
			st = statusWarning
		default:
			continue
		}
		in := instance{node: strings.ToLower(e.Node.Node), port: uint16(e.Service.Port), status: st}
		w := e.Service.Weights
		in.weight = uint16(clampWeight(w.Passing, 1))
		if st == statusWarning {
			in.weight = uint16(clampWeight(w.Warning, 1))
		}
		primary, perr := netip.ParseAddr(e.Service.Address)
		in.own = perr == nil
		if !in.own {
			primary, perr = netip.ParseAddr(e.Node.Address)
		}
		if perr == nil {
			primary = primary.Unmap()
			if primary.Is4() {
				in.v4 = primary
			} else {
				in.v6 = primary.WithZone("")
			}
		}
		// The other family from the tagged addresses, the service's
		// before the node's (lan before wan).
		if !in.v6.IsValid() {
			in.v6 = tagged(e, false)
		}
		if !in.v4.IsValid() {
			in.v4 = tagged(e, true)
		}
		if !in.v4.IsValid() && !in.v6.IsValid() {
			continue
		}
		var tb strings.Builder
		for _, t := range e.Service.Tags {
			tb.WriteString(strings.ToLower(t))
			tb.WriteByte(0)
		}
		in.tags = tb.String()
		out = append(out, in)
	}
	slices.SortFunc(out, compareInstances)
	return slices.Compact(out)
}

func compareInstances(a, b instance) int {
	return cmp.Or(strings.Compare(a.node, b.node), a.v4.Compare(b.v4), a.v6.Compare(b.v6),
		cmp.Compare(a.port, b.port), strings.Compare(a.tags, b.tags), cmp.Compare(a.status, b.status),
		cmp.Compare(a.weight, b.weight))
}

func clampWeight(w, def int) int {
	if w <= 0 {
		return def
	}
	return min(w, 65535)
}

// tagged returns the instance's tagged address of the family (v4: IPv4)
// from the service's tagged addresses, then the node's; lan first.
func tagged(e *api.ServiceEntry, v4 bool) netip.Addr {
	keys := [2]string{"lan_ipv6", "wan_ipv6"}
	if v4 {
		keys = [2]string{"lan_ipv4", "wan_ipv4"}
	}
	for _, k := range keys {
		if sa, ok := e.Service.TaggedAddresses[k]; ok {
			if a, ok := family(sa.Address, v4); ok {
				return a
			}
		}
	}
	for _, k := range keys {
		if s, ok := e.Node.TaggedAddresses[k]; ok {
			if a, ok := family(s, v4); ok {
				return a
			}
		}
	}
	return netip.Addr{}
}

func family(s string, v4 bool) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	if a.Is4() != v4 {
		return netip.Addr{}, false
	}
	return a.WithZone(""), true
}

// nodeView is a node as answered: its addresses.
type nodeView struct {
	found  bool
	v4, v6 netip.Addr
}

func nodeOf(cn *api.CatalogNode) nodeView {
	if cn == nil || cn.Node == nil {
		return nodeView{}
	}
	nv := nodeView{found: true}
	if a, err := netip.ParseAddr(cn.Node.Address); err == nil {
		if a = a.Unmap(); a.Is4() {
			nv.v4 = a
		} else {
			nv.v6 = a.WithZone("")
		}
	}
	for _, k := range []string{"lan_ipv4", "wan_ipv4", "lan_ipv6", "wan_ipv6"} {
		v4 := strings.HasSuffix(k, "4")
		if (v4 && nv.v4.IsValid()) || (!v4 && nv.v6.IsValid()) {
			continue
		}
		if a, ok := family(cn.Node.TaggedAddresses[k], v4); ok {
			if v4 {
				nv.v4 = a
			} else {
				nv.v6 = a
			}
		}
	}
	return nv
}

// fetchers builds the fetch functions of service and node watches.
type fetchers struct{ client *api.Client }

func (f fetchers) service(name, dc string) fetchFunc[[]instance] {
	return func(ctx context.Context, index uint64) ([]instance, uint64, error) {
		q := &api.QueryOptions{Datacenter: dc, WaitIndex: index, WaitTime: BlockWait}
		entries, meta, err := f.client.Health().Service(name, "", false, q.WithContext(ctx))
		if err != nil {
			return nil, 0, err
		}
		return instances(entries), meta.LastIndex, nil
	}
}

func (f fetchers) node(name, dc string) fetchFunc[nodeView] {
	return func(ctx context.Context, index uint64) (nodeView, uint64, error) {
		q := &api.QueryOptions{Datacenter: dc, WaitIndex: index, WaitTime: BlockWait}
		cn, meta, err := f.client.Catalog().Node(name, q.WithContext(ctx))
		if err != nil {
			return nodeView{}, 0, err
		}
		return nodeOf(cn), meta.LastIndex, nil
	}
}
