package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/edge/zone"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/prometheus/client_golang/prometheus"
)

// A generation is everything built from one configuration: the compiled
// pipeline, the upstream groups and what they own. Reload builds a new one
// and swaps it in atomically; queries in flight finish on the old one,
// which is closed after they had time to.
type generation struct {
	cfg       *Config
	handler   pipeline.Handler
	groups    map[string]*transport.Group
	upstreams []*transport.Upstream
	bootstrap *transport.Bootstrap
	// metrics of this generation's parts (cache), gathered through the
	// server's registry while the generation is current.
	metrics *prometheus.Registry
	// cache is shared with the generations before and after this one
	// while the cache section stays the same; zones and nxdomain are
	// this generation's own.
	cache    *sharedCache
	zones    *zone.Zones
	nxdomain *middleware.NXDomain
}

// A sharedCache is an answer cache handed from one generation to the next
// while the cache section is unchanged, so a reload keeps what was cached
// (stale entries included: a reload while the upstreams are down must not
// lose them). The last generation to let go closes it.
type sharedCache struct {
	c    *cache.Cache
	spec cache.Spec
	refs atomic.Int32
}

func (sc *sharedCache) release() {
	if sc.refs.Add(-1) == 0 {
		sc.c.Close()
	}
}

// buildDeps are what a generation takes from the running server.
type buildDeps struct {
	log      *slog.Logger
	registry *transport.Registry
	loop     *middleware.Loop
	// resolveTimeout bounds the first resolution of host-name upstreams.
	resolveTimeout time.Duration
	// prev is the generation being replaced, nil at start.
	prev *generation
}

// buildGeneration compiles cfg into a generation. On error everything it
// opened is closed again.
func buildGeneration(cfg *Config, d buildDeps) (_ *generation, err error) {
	g := &generation{cfg: cfg, groups: make(map[string]*transport.Group), metrics: prometheus.NewRegistry()}
	oldHealth := d.registry.SetConfig(cfg.Health.HealthConfig())
	defer func() {
		if err != nil {
			g.close()
			d.registry.SetConfig(oldHealth)
		}
	}()
	var boot []netip.AddrPort
	for _, b := range cfg.Bootstrap {
		ap, err := transport.ParseBootstrap(b)
		if err != nil {
			return nil, err
		}
		boot = append(boot, ap)
	}
	g.bootstrap = transport.NewBootstrap(boot)
	own := ownAddrs(cfg.ListenAddrs())
	byName := make(map[string]*transport.Upstream)
	for _, spec := range cfg.Upstreams {
		ep, err := transport.ParseEndpoint(spec.URL)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", spec.Name, err)
		}
		pin, _ := transport.ParsePin(spec.Family)
		prefer := transport.IPv6
		if spec.Prefer == "ipv4" {
			prefer = transport.IPv4
		}
		tlsOpts, err := spec.TLSOptions()
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", spec.Name, err)
		}
		u, err := transport.NewUpstream(
			transport.UpstreamConfig{Name: spec.Name, Endpoint: ep, Pin: pin, Prefer: prefer, TLS: tlsOpts, HTTP3: spec.HTTP3},
			transport.UpstreamDeps{Registry: d.registry, Resolver: g.bootstrap, Logger: d.log, Own: own, Probe: cfg.Health.ProbeSpec()})
		if err != nil {
			return nil, err
		}
		g.upstreams = append(g.upstreams, u)
		byName[spec.Name] = u
	}
	if err := g.resolveAll(d); err != nil {
		return nil, err
	}
	for _, gs := range cfg.Groups {
		strat, err := transport.NewStrategy(gs.Strategy)
		if err != nil {
			return nil, err
		}
		var us []*transport.Upstream
		for _, n := range gs.Upstreams {
			us = append(us, byName[n])
		}
		g.groups[gs.Name] = transport.NewGroup(gs.Name, strat, gs.RaceConfig(), us...)
	}
	deflt := DefaultGroup
	if _, ok := g.groups[deflt]; !ok {
		deflt = cfg.Groups[0].Name
	}
	fwd, err := middleware.NewForward(g.groups, deflt, d.loop)
	if err != nil {
		return nil, err
	}
	g.handler, err = g.chain(fwd, d)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// resolveAll resolves host-name upstreams in parallel. A name that does not
// resolve yet is logged and retried in the background: the server still
// starts, and queries to a group without paths fail with EDE 22.
func (g *generation) resolveAll(d buildDeps) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.resolveTimeout)
	defer cancel()
	errs := make(chan error, len(g.upstreams))
	for _, u := range g.upstreams {
		go func() { errs <- u.Start(ctx) }()
	}
	for range g.upstreams {
		if err := <-errs; err != nil {
			d.log.Warn("upstream not resolved yet; retrying in the background", "error", err.Error())
		}
	}
	return nil
}

// chain compiles the middleware, outermost first. The order is fixed here,
// once per generation: the fallback zone wraps everything that may still
// answer (zones, the cache with its stale entries), so it speaks only when
// they cannot; local and tenant zones answer before the NXDOMAIN cache and
// the answer cache, so their names are never cached.
func (g *generation) chain(fwd pipeline.Handler, d buildDeps) (pipeline.Handler, error) {
	var mws []pipeline.Middleware
	if g.cfg.Log.Queries {
		mws = append(mws, middleware.NewQueryLog(d.log).Middleware)
	}
	mws = append(mws, d.loop.Middleware)
	if !g.cfg.Zone.Empty() {
		z, err := zone.New(g.cfg.Zone, d.log, g.metrics)
		if err != nil {
			return nil, err
		}
		g.zones = z
		if len(g.cfg.Zone.Fallback) > 0 {
			mws = append(mws, z.Fallback())
		}
		mws = append(mws, z.Middleware())
	}
	if g.cfg.NXDomain.Enabled() {
		nx, err := middleware.NewNXDomain(g.cfg.NXDomain, nil, g.metrics)
		if err != nil {
			return nil, fmt.Errorf("build nxdomain cache: %w", err)
		}
		g.nxdomain = nx
		mws = append(mws, nx.Middleware())
	}
	if g.cfg.Cache.On() {
		sc, err := g.buildCache(d.prev)
		if err != nil {
			return nil, err
		}
		g.cache = sc
		mws = append(mws, sc.c.Middleware())
	}
	return pipeline.Chain(fwd, mws...), nil
}

// buildCache takes over prev's cache when the cache section is the same,
// or makes a new one.
func (g *generation) buildCache(prev *generation) (*sharedCache, error) {
	if prev != nil && prev.cache != nil && reflect.DeepEqual(prev.cache.spec, g.cfg.Cache) {
		sc := prev.cache
		if err := sc.c.Register(g.metrics); err != nil {
			return nil, err
		}
		sc.refs.Add(1)
		return sc, nil
	}
	c, err := cache.New(g.cfg.Cache.Config(), g.metrics)
	if err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	sc := &sharedCache{c: c, spec: g.cfg.Cache}
	sc.refs.Store(1)
	return sc, nil
}

// close releases the generation's upstream paths.
func (g *generation) close() error {
	var errs []error
	if g.zones != nil {
		errs = append(errs, g.zones.Close())
	}
	if g.nxdomain != nil {
		errs = append(errs, g.nxdomain.Close())
	}
	if g.cache != nil {
		g.cache.release()
	}
	for _, u := range g.upstreams {
		errs = append(errs, u.Close())
	}
	if g.bootstrap != nil {
		errs = append(errs, g.bootstrap.Close())
	}
	return errors.Join(errs...)
}

// paths lists every path of the generation once.
func (g *generation) paths() []*transport.Path {
	var out []*transport.Path
	for _, u := range g.upstreams {
		for _, p := range u.Paths() {
			out = append(out, p)
			if p.Stream != nil {
				out = append(out, p.Stream)
			}
		}
	}
	return out
}
