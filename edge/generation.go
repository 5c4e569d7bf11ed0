package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/drill"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/edge/tracing"
	"github.com/dnsedge/dnsedge/edge/tsig"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/prometheus/client_golang/prometheus"
)

// A generation is everything built from one configuration: the compiled
// pipeline, the upstream groups and what they own. Reload builds a new one
// and swaps it in atomically; queries in flight finish on the old one,
// which is released after they had time to.
//
// What may outlive the generation (upstreams, bootstrap resolvers, the
// cache) comes from the server's pool and is held by parts; what is the
// generation's own (zones, the NXDOMAIN cache, groups, the chain) is
// closed by closers.
type generation struct {
	cfg       *Config
	handler   pipeline.Handler
	groups    map[string]*transport.Group
	upstreams []*transport.Upstream
	// metrics of this generation's parts (cache, zones), gathered through
	// the server's registry while the generation is current.
	metrics *prometheus.Registry
	parts   *hold
	closers []func() error
	// tracer exports spans when the tracing section is on; nil otherwise.
	tracer *tracing.Tracer
	// tsigKeys are the keys of the tsig section, built by the first user
	// (the TSIG stage, upstreams that sign).
	tsigKeys *tsig.Keyring
	// admin is what the admin listener serves; nil without one.
	admin *adminGen
	// stamp is set when the generation is committed (see stampGen).
	stamp stamp
	// policy is the chain's policy stage, nil without one: the canary
	// runs it alone to compare decisions.
	policy pipeline.Middleware
	// stats counts what the generation answered while live, for the
	// rollback watch; nil for shadows (see buildCanaryTap).
	stats *genStats
	// cache is the answer cache of the chain; nil without one.
	cache *cache.Cache
}

// buildDeps are what a generation takes from the running server.
type buildDeps struct {
	log      *slog.Logger
	registry *transport.Registry
	loop     *middleware.Loop
	drills   *drill.Manager
	// resolveTimeout bounds the first resolution of host-name upstreams.
	resolveTimeout time.Duration
	// hook is the server's canary hook the canary stage reads; nil for
	// the canary's own shadow generations.
	hook *canaryHook
	// ops adds the operating endpoints to the admin API; nil for none.
	ops func(mux *http.ServeMux, auth *admin.Auth)
	// version answers version.bind; empty answers nothing.
	version string
}

// Keys of the parts a generation takes from the pool. Each holds all a
// part is built from, so equal keys mean the running part serves the new
// configuration as it is.
type (
	bootstrapKey struct{ servers string }
	upstreamKey  struct {
		spec  string // the upstream's section, and the state of its CA file
		boot  bootstrapKey
		own   string // the listen addresses an upstream must never be
		probe transport.ProbeSpec
		// tsig identifies the key the upstream signs with (a hash, not
		// the secret), so that a changed secret builds it again.
		tsig string
	}
	cacheKey  struct{ spec, trust, l2files string }
	tracerKey struct{ spec string }
)

// jsonKey returns v as a canonical string for a key.
func jsonKey(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("edge: key of %T: %v", v, err))
	}
	return string(b)
}

// fileStamp describes a file's identity and age, so a key that names a
// file changes when the file does.
func fileStamp(name string) string {
	if name == "" {
		return ""
	}
	fi, err := os.Stat(name)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
}

// buildGeneration compiles cfg into a generation, taking its long-lived
// parts from the pool through parts. On error the caller releases parts
// and closes what the generation built itself (g.close).
func buildGeneration(ctx context.Context, cfg *Config, parts *hold, d buildDeps) (_ *generation, err error) {
	g := &generation{cfg: cfg, groups: make(map[string]*transport.Group), metrics: prometheus.NewRegistry(), parts: parts}
	defer func() {
		if err != nil {
			g.close()
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
	bk := bootstrapKey{servers: fmt.Sprint(boot)}
	bootstrap, _, err := take(parts, bk, func() (*transport.Bootstrap, func() error, error) {
		b := transport.NewBootstrap(boot)
		return b, b.Close, nil
	})
	if err != nil {
		return nil, err
	}
	listen := cfg.ListenAddrs()
	own := ownAddrs(listen)
	byName := make(map[string]*transport.Upstream)
	var fresh []*transport.Upstream
	for _, spec := range cfg.Upstreams {
		key := upstreamKey{spec: jsonKey(spec) + fileStamp(spec.CAFile), boot: bk, own: fmt.Sprint(listen), probe: cfg.Health.ProbeSpec(),
			tsig: cfg.TSIG.Fingerprint(spec.TSIGKey)}
		u, isNew, err := take(parts, key, func() (*transport.Upstream, func() error, error) {
			u, err := newUpstream(spec, bootstrap, own, cfg, d)
			if err != nil {
				return nil, nil, err
			}
			return u, u.Close, nil
		})
		if err != nil {
			return nil, err
		}
		if isNew {
			fresh = append(fresh, u)
		}
		g.upstreams = append(g.upstreams, u)
		byName[spec.Name] = u
	}
	startAll(ctx, fresh, d)
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
	carry := middleware.Carry{TagCode: uint16(cfg.Tags.OptionCode), TraceCode: uint16(cfg.Trace.OptionCode)}
	if cfg.Tracing.On() {
		g.tracer, _, err = take(parts, tracerKey{jsonKey(cfg.Tracing)}, func() (*tracing.Tracer, func() error, error) {
			t, err := tracing.New(cfg.Tracing)
			if err != nil {
				return nil, nil, err
			}
			return t, t.Close, nil
		})
		if err != nil {
			return nil, err
		}
		carry.Attempt = g.tracer.Attempt
	}
	fwd, err := middleware.NewForward(g.groups, deflt, d.loop, carry)
	if err != nil {
		return nil, err
	}
	g.handler, err = g.chain(fwd, d)
	if err != nil {
		return nil, err
	}
	if err := buildAdmin(ctx, g, d); err != nil {
		return nil, err
	}
	return g, nil
}

func newUpstream(spec transport.UpstreamSpec, boot *transport.Bootstrap, own func(netip.AddrPort) bool, cfg *Config, d buildDeps) (*transport.Upstream, error) {
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
	var signer transport.Signer
	if spec.TSIGKey != "" {
		kr, err := tsig.New(cfg.TSIG, nil)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", spec.Name, err)
		}
		if signer, err = kr.Upstream(spec.TSIGKey); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", spec.Name, err)
		}
	}
	return transport.NewUpstream(
		transport.UpstreamConfig{Name: spec.Name, Endpoint: ep, Pin: pin, Prefer: prefer, TLS: tlsOpts, HTTP3: spec.HTTP3, Signer: signer},
		transport.UpstreamDeps{Registry: d.registry, Resolver: boot, Logger: d.log, Own: own, Probe: cfg.Health.ProbeSpec()})
}

// startAll starts new upstreams in parallel: host names are resolved,
// probes begin. A name that does not resolve yet is logged and retried in
// the background: the server still starts, and queries to a group without
// paths fail with EDE 22.
func startAll(ctx context.Context, us []*transport.Upstream, d buildDeps) {
	ctx, cancel := context.WithTimeout(ctx, d.resolveTimeout)
	defer cancel()
	errs := make(chan error, len(us))
	for _, u := range us {
		go func() { errs <- u.Start(ctx) }()
	}
	for range us {
		if err := <-errs; err != nil {
			d.log.Warn("upstream not resolved yet; retrying in the background", "error", err.Error())
		}
	}
}

// close closes what the generation built itself and releases the parts
// it held.
func (g *generation) close() error {
	var errs []error
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i]())
	}
	g.closers = nil
	errs = append(errs, g.parts.release())
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
