package transport

import (
	"fmt"
	"slices"
	"time"
)

// A Strategy orders a group's paths for one query. Order must not modify
// its argument. The race engine consumes the order: it starts the first
// path, then the next (other family first) after an attempt delay or at
// once when an attempt fails.
type Strategy interface {
	Name() string
	Order(paths []*Path) []*Path
	// Parallel reports whether every path is started at once instead of
	// one after another.
	Parallel() bool
}

// NewStrategy returns the strategy of the given name: "sequential" (the
// default when empty), "parallel" or "fastest".
func NewStrategy(name string) (Strategy, error) {
	switch name {
	case "", "sequential":
		return sequential{}, nil
	case "parallel":
		return parallel{}, nil
	case "fastest":
		return fastest{}, nil
	}
	return nil, fmt.Errorf("unknown strategy %q (want sequential, parallel or fastest)", name)
}

// StrategyNames lists the valid strategy names.
var StrategyNames = []string{"sequential", "parallel", "fastest"}

// sequential keeps the configured order: ordered failover.
type sequential struct{}

func (sequential) Name() string                { return "sequential" }
func (sequential) Parallel() bool              { return false }
func (sequential) Order(paths []*Path) []*Path { return paths }

// parallel races every path at once; the first good answer wins.
type parallel struct{}

func (parallel) Name() string                { return "parallel" }
func (parallel) Parallel() bool              { return true }
func (parallel) Order(paths []*Path) []*Path { return paths }

// fastest orders by smoothed RTT, measured paths first. It never
// explores with client queries: paths that get no traffic are measured by
// the background probes of their upstream, so a path that got faster is
// noticed without a client waiting on it.
type fastest struct{}

func (fastest) Name() string   { return "fastest" }
func (fastest) Parallel() bool { return false }

func (fastest) Order(paths []*Path) []*Path {
	type keyed struct {
		p    *Path
		srtt time.Duration // 0: unmeasured
	}
	ks := make([]keyed, len(paths))
	for i, p := range paths {
		ks[i] = keyed{p, p.Health.Estimate().SRTT}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		switch {
		case a.srtt == b.srtt:
			return 0
		case a.srtt == 0:
			return 1
		case b.srtt == 0:
			return -1
		case a.srtt < b.srtt:
			return -1
		}
		return 1
	})
	out := make([]*Path, len(ks))
	for i, k := range ks {
		out[i] = k.p
	}
	return out
}

// interleave reorders paths the Happy Eyeballs way (RFC 8305 §4): the first
// path keeps its place, and from then on families alternate, each family
// keeping its own relative order.
func interleave(paths []*Path) []*Path {
	if len(paths) < 3 && (len(paths) < 2 || paths[0].Family != paths[1].Family) {
		return paths
	}
	var first, other []*Path
	fam := paths[0].Family
	for _, p := range paths {
		if p.Family == fam {
			first = append(first, p)
		} else {
			other = append(other, p)
		}
	}
	out := make([]*Path, 0, len(paths))
	for len(first) > 0 || len(other) > 0 {
		if len(first) > 0 {
			out = append(out, first[0])
			first = first[1:]
		}
		if len(other) > 0 {
			out = append(out, other[0])
			other = other[1:]
		}
	}
	return out
}
