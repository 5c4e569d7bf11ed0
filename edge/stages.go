package edge

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/cache/l2"
	"github.com/dnsedge/dnsedge/edge/dnstap"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/edge/records"
	"github.com/dnsedge/dnsedge/edge/validate"
	"github.com/dnsedge/dnsedge/edge/zone"
	"github.com/dnsedge/dnsedge/internal/field"
)

// A stage is one row of the chain: a middleware the configuration may
// turn on. build returns nil when the configuration does not use the
// stage; what it opens it hands to b.onClose.
type stage struct {
	name  string
	build func(b *chainBuild) (pipeline.Middleware, error)
}

// stages is the chain, outermost first, fixed here once: dnstap and the
// query log see every answer; the query's span (when tracing is on)
// starts before its trace id is made, so that a new trace id is the
// span's; the trace id is made before any other stage logs; loop
// detection comes before anything that could forward; a trusted client's
// tags join req.Tags; policy decides the route, adds its tags, decides
// ECS or answers locally; the ECS stage turns policy's decision into
// req.ECS, both before the cache, which keys on them; the fallback zone
// wraps everything that may still answer (zones, the cache with its stale
// entries), so it speaks only when they cannot; local and tenant zones
// answer before the NXDOMAIN cache and the answer cache, so their names
// are never cached; ANY queries the zones did not answer get the RFC 8482
// answer before the caches and forward; DNSSEC validation sits just inside
// the cache, so that the cache stores validated answers with their
// verdict and a validated hit costs what any hit costs. TSIG verification
// comes right after the logs, before anything that may answer; queries
// signed with a key dnsedge does not hold skip the NXDOMAIN and answer
// caches (RFC 8945 §5.5: their answers are the key holder's, never
// cached) and validation. Consul's domain is answered right after the
// local and tenant zones, in their place: never cached, and a zone
// configured for the same names wins. version.bind (CH TXT) is answered
// right after the logs, before anything else may see it. The canary's tap
// sits just before policy, where it sees the query as policy is to see it
// and the answer of everything policy decides. Adding a middleware is a
// file of its own and one row here.
var stages = []stage{
	{"dnstap", buildDnstap},
	{"querylog", buildQueryLog},
	{"version", buildVersion},
	{"tsig", buildTSIG},
	{"tracing", buildTracing},
	{"trace", buildTrace},
	{"loop", buildLoop},
	{"tags", buildTags},
	{"canary", buildCanaryTap},
	{"policy", buildPolicy},
	{"ecs", buildECS},
	{"fallback", buildFallback},
	{"zones", buildZones},
	{"consul", buildConsul},
	{"any", buildANY},
	{"nxdomain", buildNXDomain},
	{"cache", buildCache},
	{"validate", buildValidate},
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
		if s.name == "policy" {
			g.policy = mw
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
	cfg := b.g.cfg.NXDomain
	nx, _, err := take(b.g.parts, nxdomainKey{jsonKey(cfg)}, func() (*middleware.NXDomain, func() error, error) {
		nx, err := middleware.NewNXDomain(cfg, nil, nil)
		if err != nil {
			return nil, nil, err
		}
		return nx, nx.Close, nil
	})
	if err != nil {
		return nil, err
	}
	if err := nx.Register(b.g.metrics); err != nil {
		return nil, err
	}
	return skipForeignTSIG(nx.Middleware()), nil
}

// nxdomainKey identifies the NXDOMAIN cache in the pool: a reload that
// keeps its section keeps the denials it remembers.
type nxdomainKey struct{ spec string }

// buildCache takes the answer cache from the pool: a reload that keeps
// the cache section and the DNSSEC trust (trustKey) keeps what was
// cached (stale entries included: a reload while the upstreams are down
// must not lose them). A shared cache (cache.l2) is built with it and
// closed with it; the pool key includes its key and password files, so a
// rotated fleet key takes effect on reload.
func buildCache(b *chainBuild) (pipeline.Middleware, error) {
	spec := b.g.cfg.Cache
	if !spec.On() {
		return nil, nil
	}
	var store *l2.Store
	c, _, err := take(b.g.parts, cacheKey{spec: jsonKey(spec), trust: trustKey(b.g.cfg.DNSSEC), l2files: l2FileStamps(spec.L2)}, func() (*cache.Cache, func() error, error) {
		cfg := spec.Config()
		if spec.L2.On() {
			lc, err := spec.L2.Config()
			if err != nil {
				return nil, nil, field.Prefix("cache.l2", err)
			}
			lc.Log = b.d.log
			lc.Validation = validationFingerprint(b.g.cfg.DNSSEC)
			if store, err = l2.New(lc); err != nil {
				return nil, nil, err
			}
			cfg.L2 = store
		}
		c, err := cache.New(cfg, nil)
		if err != nil {
			if store != nil {
				store.Close()
			}
			return nil, nil, err
		}
		closeAll := func() error {
			err := c.Close()
			if store != nil {
				err = errors.Join(err, store.Close())
			}
			return err
		}
		return c, closeAll, nil
	})
	if err != nil {
		return nil, err
	}
	if err := c.Register(b.g.metrics); err != nil {
		return nil, err
	}
	b.g.cache = c
	if s, ok := c.Shared().(*l2.Store); ok {
		if err := s.Register(b.g.metrics); err != nil {
			return nil, err
		}
	}
	return skipForeignTSIG(c.Middleware()), nil
}

// The Redis store is the cache's shared cache.
var _ cache.Shared = (*l2.Store)(nil)

// validationFingerprint names the DNSSEC validation a configuration
// applies, for the keys of the shared cache: "off", or a hash of the
// dnssec section (the audit log aside), the same on every instance with
// the same section.
func validationFingerprint(cfg validate.Config) string {
	if !cfg.On() {
		return "off"
	}
	cfg.AuditLog = validate.AuditConfig{}
	sum := sha256.Sum256([]byte(jsonKey(cfg)))
	return hex.EncodeToString(sum[:6])
}

// l2FileStamps is the state of the files the shared cache reads.
func l2FileStamps(s l2.Spec) string {
	st := fileStamp(s.KeyFile) + ";" + fileStamp(s.Redis.PasswordFile)
	if t := s.Redis.TLS; t != nil {
		st += ";" + fileStamp(t.CAFile) + ";" + fileStamp(t.CertFile) + ";" + fileStamp(t.KeyFile)
	}
	return st
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
	cfg := b.g.cfg.Zone
	key := zoneKey{spec: jsonKey(cfg), files: zoneFileStamps(cfg)}
	var feed zone.Feed
	if len(cfg.APIOrigins()) > 0 {
		m, err := takeRecords(b.g, b.d)
		if err != nil {
			return nil, err
		}
		feed, key.records = m, b.g.cfg.recordsDir()
		if b.g.cfg.Records.Store == records.StoreConsul {
			key.records += " " + recordsConsulSpec(b.g.cfg)
		}
	}
	z, _, err := take(b.g.parts, key, func() (*zone.Zones, func() error, error) {
		z, err := zone.New(cfg, b.d.log, nil)
		if err != nil {
			return nil, nil, err
		}
		if feed != nil {
			if err := z.Follow(feed); err != nil {
				z.Close()
				return nil, nil, err
			}
		}
		return z, z.Close, nil
	})
	if err != nil {
		return nil, err
	}
	if err := z.Register(b.g.metrics); err != nil {
		return nil, err
	}
	b.zones = z
	return z, nil
}

// zoneKey identifies the zones of a configuration in the pool: the zone
// sections and the state of every zone file they name, so that a reload
// reads the zone files again when one has changed (and refuses a broken
// one), and otherwise keeps the zones as loaded. records identifies the
// records Manager the API zones follow.
type zoneKey struct{ spec, files, records string }

func zoneFileStamps(cfg zone.Config) string {
	var b strings.Builder
	stamp := func(zs []zone.ZoneSpec) {
		for _, z := range zs {
			if z.File != "" {
				fmt.Fprintf(&b, "%s=%s;", z.File, fileStamp(z.File))
			}
		}
	}
	stamp(cfg.Zones)
	stamp(cfg.Fallback)
	for _, t := range cfg.Tenants {
		stamp(t.Zones)
	}
	return b.String()
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

func buildTrace(*chainBuild) (pipeline.Middleware, error) { return middleware.Trace, nil }

func buildTags(b *chainBuild) (pipeline.Middleware, error) {
	if len(b.g.cfg.Tags.Trusted) == 0 {
		return nil, nil
	}
	t, err := middleware.NewTags(b.g.cfg.Tags)
	if err != nil {
		return nil, err
	}
	return t.Middleware, nil
}

func buildECS(b *chainBuild) (pipeline.Middleware, error) {
	e, err := middleware.NewECS(b.g.cfg.ECS)
	if err != nil {
		return nil, err
	}
	return e.Middleware, nil
}

// buildDnstap takes the dnstap output from the pool: a reload that keeps
// the section keeps writing to the same file or socket connection.
func buildDnstap(b *chainBuild) (pipeline.Middleware, error) {
	cfg := b.g.cfg.Dnstap
	if !cfg.On() {
		return nil, nil
	}
	t, _, err := take(b.g.parts, dnstapKey{jsonKey(cfg)}, func() (*dnstap.Tap, func() error, error) {
		t, err := dnstap.New(cfg, "dnsedge")
		if err != nil {
			return nil, nil, err
		}
		return t, t.Close, nil
	})
	if err != nil {
		return nil, err
	}
	if err := t.Register(b.g.metrics); err != nil {
		return nil, err
	}
	return t.Middleware, nil
}

// dnstapKey identifies the dnstap output in the pool.
type dnstapKey struct{ spec string }

func buildTracing(b *chainBuild) (pipeline.Middleware, error) {
	if b.g.tracer == nil {
		return nil, nil
	}
	return b.g.tracer.Middleware, nil
}
