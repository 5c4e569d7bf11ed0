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

// UsesQueryMeta reports whether an upstream of the group reads the
// query's Meta (WithQueryMeta): DoH upstreams send its tags and trace id
// as headers; the others carry them in the query's EDNS options.
func (g *Group) UsesQueryMeta() bool {
	for _, u := range g.Upstreams {
		if u.cfg.Endpoint.Scheme == "https" {
			return true
		}
	}
	return false
}

// Round backoff: when a round ends at once (every path refused) the next
// waits this long, doubling, so a query never spins.
const (
	minRoundWait = 10 * time.Millisecond
	maxRoundWait = 500 * time.Millisecond
)

// Exchange answers q from the first path that gives a good answer.
//
// When every attempt of a round failed and one of them timed out (a lossy
// path, or an upstream whose response rate limiting dropped the query),
// it goes over the paths again for as long as the client's budget (ctx's
// deadline) lasts, as a stub resolver retransmits: each timeout has
// doubled its path's RTO (RFC 6298 §5.5), and every second round goes over
// TCP (the Stream of UDP paths), which rate limiting does not drop and
// which settles a lossy path. A round that fails at once waits a little
// before the next. It returns a *RaceError when no path answered.
//
// A query that every attempt would send as it is (see packPrepared) is
// packed once here; then q must not be packed concurrently elsewhere.
func (g *Group) Exchange(ctx context.Context, q *dns.Msg) (Result, error) {
	var attempts int
	wire := packPrepared(q)
	wait := minRoundWait
	for round := 1; ; round++ {
		order := g.order()
		if round%2 == 0 {
			order = streams(order)
		}
		res, err := race(ctx, q, wire, order, g.Strategy.Parallel(), g.Race)
		res.Attempts += attempts
		attempts = res.Attempts
		if err == nil {
			return res, nil
		}
		re := raceError(err)
		if re == nil || !re.timedOut() || !g.timeLeft(ctx, round) {
			return res, err
		}
		if since(g.Race.Clock, re.began) < wait {
			if !g.pause(ctx, wait) {
				return res, err
			}
			wait = min(2*wait, maxRoundWait)
		}
	}
}

// raceError returns the *RaceError in err's chain, nil if none. The
// variable errors.As fills is moved to the heap: here, only a failed
// exchange pays for it.
func raceError(err error) *RaceError {
	var re *RaceError
	if errors.As(err, &re) {
		return re
	}
	return nil
}

// pause waits d on the group's clock; false when ctx ended first.
func (g *Group) pause(ctx context.Context, d time.Duration) bool {
	t := g.Race.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return true
	case <-ctx.Done():
		return false
	}
}

// roundsWithoutDeadline bounds the rounds of a query whose ctx has no
// deadline, which would otherwise never end.
const roundsWithoutDeadline = 3

// timeLeft reports whether ctx leaves room for another round after round.
func (g *Group) timeLeft(ctx context.Context, round int) bool {
	select {
	case <-ctx.Done():
		return false
	default:
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return round < roundsWithoutDeadline
	}
	return until(g.Race.Clock, dl) > g.Race.MinAttemptDelay
}

// order is the race order for one query: the strategy's order of the
// paths (each upstream's families ordered by measured RTT), demoted paths
// after the others, families interleaved within each part (RFC 8305 §4),
// and every unmeasured path given a prior.
func (g *Group) order() []candidate {
	rs := make([]ranked, 0, 8)
	for _, u := range g.Upstreams {
		first := len(rs)
		for _, p := range u.Paths() {
			rs = append(rs, ranked{p, p.Health.Rank()})
		}
		familyOrder(rs[first:], g.Race)
	}
	if len(rs) == 1 {
		// One path (a group of one upstream at one address): nothing to
		// order, one allocation.
		out := []candidate{{p: rs[0].p}}
		if rs[0].Estimate.Samples < settled {
			out[0].prior = prior(rs[0].p, rs)
		}
		return out
	}
	paths := make([]*Path, len(rs))
	for i, r := range rs {
		paths[i] = r.p
	}
	paths = g.Strategy.Order(paths)
	demoted := 0
	for _, r := range rs {
		if r.Demoted {
			demoted++
		}
	}
	if demoted > 0 {
		good, bad := make([]*Path, 0, len(paths)-demoted), make([]*Path, 0, demoted)
		for _, p := range paths {
			if rankOf(rs, p).Demoted {
				bad = append(bad, p)
			} else {
				good = append(good, p)
			}
		}
		paths = append(interleave(good), interleave(bad)...)
	} else {
		paths = interleave(paths)
	}
	out := make([]candidate, len(paths))
	for i, p := range paths {
		out[i] = candidate{p: p}
		if rankOf(rs, p).Estimate.Samples < settled {
			out[i].prior = prior(p, rs)
		}
	}
	return out
}

// ranked is a path with its rank, read once per query.
type ranked struct {
	p *Path
	Rank
}

// rankOf finds p's rank; groups have a handful of paths.
func rankOf(rs []ranked, p *Path) Rank {
	for _, r := range rs {
		if r.p == p {
			return r.Rank
		}
	}
	return Rank{}
}

// prior is the estimate a path borrows while it has not settled: its
// upstream's measured path of the other family (then of its own), else
// the fastest measured path among rs. The zero Estimate when nothing else
// is measured. An unmeasured path takes its timeout from it; a path with
// a sample or two may hedge by it (see candidate.hedgeEstimate).
func prior(p *Path, rs []ranked) Estimate {
	var sameUp, best Estimate
	for _, r := range rs {
		e := r.Estimate
		if r.p == p || !e.Known() {
			continue
		}
		if r.p.ID.Upstream == p.ID.Upstream && (!sameUp.Known() || r.p.Family != p.Family) {
			sameUp = e
		}
		if !best.Known() || e.SRTT < best.SRTT {
			best = e
		}
	}
	if sameUp.Known() {
		return sameUp
	}
	return best
}

// familyOrder puts one upstream's paths, in place, in the order of
// measured RTT between families when the difference is significant (the
// slower family's best SRTT more than FamilyRatio times and more than
// FamilyMargin above the faster's), and keeps the configured preference
// otherwise. A family not measured yet goes after one that is. Within a
// family the order is kept; families stay interleaved.
func familyOrder(rs []ranked, cfg RaceConfig) {
	if len(rs) < 2 {
		return
	}
	first := rs[0].p.Family
	var best [2]time.Duration // [preferred family, other]; 0 = unmeasured
	mixed := false
	for _, r := range rs {
		i := 0
		if r.p.Family != first {
			i, mixed = 1, true
		}
		if e := r.Estimate; e.Known() && (best[i] == 0 || e.SRTT < best[i]) {
			best[i] = e.SRTT
		}
	}
	f, o := best[0], best[1]
	switch {
	case !mixed || o == 0:
		return
	case f == 0: // only the other family is measured
	case float64(f) <= cfg.FamilyRatio*float64(o) || f-o <= cfg.FamilyMargin:
		return
	}
	// The other family goes first: a stable partition, then interleave.
	other := make([]ranked, 0, len(rs))
	for _, r := range rs {
		if r.p.Family != first {
			other = append(other, r)
		}
	}
	for _, r := range rs {
		if r.p.Family == first {
			other = append(other, r)
		}
	}
	paths := make([]*Path, len(other))
	for i, r := range other {
		paths[i] = r.p
	}
	for i, p := range interleave(paths) {
		rs[i] = ranked{p, rankOf(other, p)}
	}
}

// streams replaces every UDP path of order by its TCP side.
func streams(order []candidate) []candidate {
	out := make([]candidate, 0, len(order))
	for _, c := range order {
		if s := c.p.Stream; s != nil {
			c = candidate{p: s, prior: c.estimate()}
		}
		out = append(out, c)
	}
	return out
}
