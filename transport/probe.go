package transport

import (
	"math/rand/v2"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// firstProbeWithin bounds the jitter before the first round of probes, so
// the paths of a freshly started upstream are measured before most queries
// need them.
const firstProbeWithin = 20 * time.Millisecond

// probe runs rounds of probes until Close. After each round it sleeps until
// the next path will have been idle for the probe interval, and at most
// half an interval (for paths that appear, whose probe is under way or
// whose breaker is open), plus up to a sixteenth of the interval so that
// many upstreams (or many sidecars) do not probe in step. An idle path is
// therefore probed once per interval, late by at most that jitter and the
// probe's own round trip: never more often than 1/Interval.
func (u *Upstream) probe() {
	defer close(u.probed)
	iv := u.deps.Probe.Interval
	wait := rand.N(firstProbeWithin)
	for u.sleep(wait) {
		wait = u.probeIdle() + rand.N(iv/16+1)
	}
}

// probeIdle sends a probe on every path that has been idle for the probe
// interval, has no probe under way and whose breaker lets a query through,
// and counts it (EventProbe) before it returns. It returns how long until
// the next path that is not idle yet will be, at most half the interval.
func (u *Upstream) probeIdle() time.Duration {
	iv := u.deps.Probe.Interval
	next := iv / 2
	paths := u.Paths()
	rs := make([]ranked, len(paths))
	for i, p := range paths {
		rs[i] = ranked{p, p.Health.Rank()}
	}
	for _, p := range paths {
		if idle := p.Health.IdleFor(); idle < iv {
			next = min(next, iv-idle)
			continue
		}
		u.mu.Lock()
		busy := u.probing[p]
		if !busy {
			select {
			case <-u.stop:
				busy = true // closing: start nothing new
			default:
			}
		}
		if !busy && p.Health.Acquire() != Denied {
			u.probing[p] = true
			u.probes.Add(1)
			p.Health.Count(EventProbe)
			c := candidate{p: p}
			if !rankOf(rs, p).Estimate.Known() {
				c.prior = prior(p, rs)
			}
			go u.probeOne(c)
		}
		u.mu.Unlock()
	}
	return next
}

// probeOne sends one probe on c's path and reports it to the path's
// health, as an exchange of the path's own, bounded by its timeout.
func (u *Upstream) probeOne(c candidate) {
	defer u.probes.Done()
	defer func() {
		u.mu.Lock()
		delete(u.probing, c.p)
		u.mu.Unlock()
	}()
	q := new(dns.Msg)
	q.SetQuestion(u.deps.Probe.Name, u.deps.Probe.Type)
	q.SetEdns0(EDNSBufferSize, false)
	results := make(chan attempt, 1)
	// Close cancels a probe under way rather than wait for its timeout.
	ticket, timeout := c.p.Health.Begin(c.prior)
	exchangeOn(u.life, false, q, nil, attempt{cand: c}, ticket, timeout, false, u.clock(), time.Time{}, results)
	a := <-results
	u.deps.Logger.Debug("probe", "path", c.p.String(), "class", a.class.String())
}

func (u *Upstream) clock() clockwork.Clock { return u.deps.Clock }
