package transport

import (
	"context"
	"errors"
	"time"

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

// maxRounds bounds how often a group goes over its paths again for one
// query when every attempt timed out.
const maxRounds = 3

// Exchange answers q from the first path that gives a good answer. When
// every path timed out and the client's budget is not spent, it goes over
// them again, as a stub resolver retransmits: each timeout has doubled its
// path's RTO (RFC 6298 §5.5) and may have opened its breaker, so the next
// round waits longer or tries elsewhere. It returns a *RaceError when no
// path answered.
func (g *Group) Exchange(ctx context.Context, q *dns.Msg) (Result, error) {
	var attempts int
	for round := 1; ; round++ {
		order := interleave(g.Strategy.Order(g.Paths()))
		res, err := race(ctx, q, order, g.Strategy.Parallel(), g.Race)
		res.Attempts += attempts
		attempts = res.Attempts
		var re *RaceError
		if err == nil || round == maxRounds || !errors.As(err, &re) || !re.timedOut() || !g.timeLeft(ctx) {
			return res, err
		}
	}
}

// timeLeft reports whether ctx leaves room for another round.
func (g *Group) timeLeft(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ctx.Err() == nil && (!ok || time.Until(dl) > g.Race.MinAttemptDelay)
}
