package transport

import (
	"context"

	"github.com/miekg/dns"
)

// A Group is a named set of upstreams and the strategy that races their
// paths. It is safe for concurrent use.
type Group struct {
	Name      string
	Strategy  Strategy
	Upstreams []*Upstream
	Race      RaceConfig
}

// NewGroup returns a group over upstreams using strategy.
func NewGroup(name string, strategy Strategy, race RaceConfig, upstreams ...*Upstream) *Group {
	return &Group{Name: name, Strategy: strategy, Upstreams: upstreams, Race: race.withDefaults()}
}

// Paths returns the group's current paths in configured order: upstreams
// in order, each upstream's paths in its family preference.
func (g *Group) Paths() []*Path {
	var out []*Path
	for _, u := range g.Upstreams {
		out = append(out, u.Paths()...)
	}
	return out
}

// Exchange answers q from the first path that gives a good answer. It
// returns a *RaceError when none did before ctx's deadline.
func (g *Group) Exchange(ctx context.Context, q *dns.Msg) (Result, error) {
	order := interleave(g.Strategy.Order(g.Paths()))
	return race(ctx, q, order, g.Strategy.Parallel(), g.Race)
}
