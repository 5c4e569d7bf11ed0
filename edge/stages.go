package edge

import (
	"fmt"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/edge/zone"
)

// A stage is one row of the chain: a middleware the configuration may
// turn on. build returns nil when the configuration does not use the
// stage; what it opens it hands to b.onClose.
type stage struct {
	name  string
	build func(b *chainBuild) (pipeline.Middleware, error)
}

// stages is the chain, outermost first, fixed here once: the query log
// sees every answer; loop detection comes before anything that could
// forward; the fallback zone wraps everything that may still answer
// (zones, the cache with its stale entries), so it speaks only when they
// cannot; local and tenant zones answer before the NXDOMAIN cache and the
// answer cache, so their names are never cached. Adding a middleware is a
// file of its own and one row here.
var stages = []stage{
	{"querylog", buildQueryLog},
	{"loop", buildLoop},
	{"fallback", buildFallback},
	{"zones", buildZones},
	{"nxdomain", buildNXDomain},
	{"cache", buildCache},
}

// chainBuild is what a stage's build gets: the generation being built,
// the server's dependencies, and the parts stages share.
type chainBuild struct {
	g *generation
	d buildDeps
	// zones is built by the first stage that needs it (fallback or zones).
	zones      *zone.Zones
	zonesBuilt bool
}

func (b *chainBuild) onClose(f func() error) { b.g.closers = append(b.g.closers, f) }

// chain compiles the stages the configuration uses around fwd.
func (g *generation) chain(fwd pipeline.Handler, d buildDeps) (pipeline.Handler, error) {
	b := &chainBuild{g: g, d: d}
	var mws []pipeline.Middleware
	for _, s := range stages {
		mw, err := s.build(b)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", s.name, err)
		}
		if mw != nil {
			mws = append(mws, mw)
		}
	}
	return pipeline.Chain(fwd, mws...), nil
}

func buildQueryLog(b *chainBuild) (pipeline.Middleware, error) {
	if !b.g.cfg.Log.Queries {
		return nil, nil
	}
	return middleware.NewQueryLog(b.d.log).Middleware, nil
}

func buildLoop(b *chainBuild) (pipeline.Middleware, error) { return b.d.loop.Middleware, nil }

func buildNXDomain(b *chainBuild) (pipeline.Middleware, error) {
	if !b.g.cfg.NXDomain.Enabled() {
		return nil, nil
	}
	nx, err := middleware.NewNXDomain(b.g.cfg.NXDomain, nil, b.g.metrics)
	if err != nil {
		return nil, err
	}
	b.onClose(nx.Close)
	return nx.Middleware(), nil
}

// buildCache takes the answer cache from the pool: a reload that keeps
// the cache section keeps what was cached (stale entries included: a
// reload while the upstreams are down must not lose them).
func buildCache(b *chainBuild) (pipeline.Middleware, error) {
	spec := b.g.cfg.Cache
	if !spec.Enabled {
		return nil, nil
	}
	c, _, err := take(b.g.parts, cacheKey{spec: jsonKey(spec)}, func() (*cache.Cache, func() error, error) {
		c, err := cache.New(spec.config(), nil)
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	})
	if err != nil {
		return nil, err
	}
	if err := c.Register(b.g.metrics); err != nil {
		return nil, err
	}
	return c.Middleware(), nil
}

// zones returns the generation's local, tenant and fallback zones, built
// by the first stage that asks; nil when the configuration has none.
func (b *chainBuild) zoneSet() (*zone.Zones, error) {
	if b.zonesBuilt {
		return b.zones, nil
	}
	b.zonesBuilt = true
	if b.g.cfg.Zone.Empty() {
		return nil, nil
	}
	z, err := zone.New(b.g.cfg.Zone, b.d.log, b.g.metrics)
	if err != nil {
		return nil, err
	}
	b.zones = z
	b.onClose(z.Close)
	return z, nil
}

func buildFallback(b *chainBuild) (pipeline.Middleware, error) {
	if len(b.g.cfg.Zone.Fallback) == 0 {
		return nil, nil
	}
	z, err := b.zoneSet()
	if err != nil {
		return nil, err
	}
	return z.Fallback(), nil
}

func buildZones(b *chainBuild) (pipeline.Middleware, error) {
	z, err := b.zoneSet()
	if z == nil || err != nil {
		return nil, err
	}
	return z.Middleware(), nil
}
