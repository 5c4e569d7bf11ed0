package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/dnsedge/dnsedge/edge/canary"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/edge/validate"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/miekg/dns"
)

// A shadow is a generation built to resolve canary samples apart from
// the live one: what the live generation shares through the server's
// pool (upstreams with their connections, path health and breakers, the
// answer and NXDOMAIN caches, dnstap, tracing) a shadow builds for itself
// in a pool of its own, with a health registry of its own, so that its
// exchanges change nothing the live queries see. It keeps no cache, so
// that every sample is a resolution; writes no query log, dnstap or
// DNSSEC audit log; sends no probes; and serves no admin API. What is
// read-only and must have one owner (the records API's journals, Consul
// watches, the zones that follow them) it borrows from the server's pool
// without holding it open any longer than the live generation does.
type shadow struct {
	g *generation
	// borrowed holds the borrowed parts in the server's pool.
	borrowed *hold
}

// borrowedPart reports whether a part of the server's pool is lent to
// shadows rather than built again.
func borrowedPart(key any) bool {
	switch key.(type) {
	case recordsKey, consulKey, consulPolicyKey, zoneKey:
		return true
	}
	return false
}

// shadowConfig returns a copy of cfg for a shadow: no cache, NXDOMAIN
// cache, query log, dnstap, tracing, DNSSEC audit log, probes or admin
// section.
func shadowConfig(cfg *Config) *Config {
	c := *cfg
	off := false
	c.Cache.Enabled = &off
	c.NXDomain = middleware.NXDomainConfig{}
	c.Log.Queries = false
	c.Dnstap.File, c.Dnstap.Socket = "", ""
	c.Tracing.OTLPEndpoint = ""
	c.DNSSEC.AuditLog = validate.AuditConfig{}
	c.Health.ProbeInterval = -1
	c.Admin = nil
	c.Records.Webhook = nil
	return &c
}

// buildShadow builds a shadow of cfg. The caller holds s.reloadMu (the
// borrowed parts must not change while they are copied).
func (s *Server) buildShadow(ctx context.Context, cfg *Config) (*shadow, error) {
	sc := shadowConfig(cfg)
	p := newPool()
	sh := &shadow{borrowed: s.pool.hold()}
	s.pool.mu.Lock()
	for k, e := range s.pool.m {
		if borrowedPart(k) {
			e.refs++
			sh.borrowed.keys = append(sh.borrowed.keys, k)
			// Never closed through the shadow's pool: its last ref
			// is this one, never released.
			p.m[k] = &poolEntry{val: e.val, refs: 1}
		}
	}
	s.pool.mu.Unlock()
	quiet := slog.New(slog.DiscardHandler)
	d := buildDeps{log: quiet, registry: transport.NewRegistry(sc.Health.HealthConfig(), nil), loop: middleware.NewLoop(quiet),
		resolveTimeout: 3 * time.Second}
	g, err := buildGeneration(ctx, sc, p.hold(), d)
	if err != nil {
		sh.borrowed.release()
		return nil, err
	}
	sh.g = g
	return sh, nil
}

func (sh *shadow) close() error {
	if sh == nil {
		return nil
	}
	err := sh.g.close()
	return errors.Join(err, sh.borrowed.release())
}

// resolve answers a copy of req through the shadow within timeout and
// returns the answer (the one a listener would send for an error) and
// whether it failed: SERVFAIL, or no answer in time.
func (sh *shadow) resolve(ctx context.Context, req *pipeline.Request, timeout time.Duration) (m *dns.Msg, failed bool, took time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := *req
	r.Outcome = pipeline.Outcome{}
	r.Received = time.Now()
	m, err := sh.g.handler.ServeDNS(ctx, &r)
	took = time.Since(r.Received)
	if err != nil {
		if errors.Is(err, pipeline.ErrDrop) {
			return nil, true, took
		}
		m = pipeline.ErrorReply(req.Msg, err)
	}
	if m == nil {
		return nil, true, took
	}
	return m, m.Rcode == dns.RcodeServerFailure, took
}

// errDecided ends a policy stage run alone: the decision is made.
var errDecided = errors.New("decided")

// decide runs g's policy stage alone on a copy of req, as it stood before
// the stage, and returns its decision.
func decide(ctx context.Context, g *generation, req *pipeline.Request) canary.Decision {
	d := canary.Decision{Route: g.cfg.defaultGroup()}
	if g.policy == nil {
		return d
	}
	r := *req
	r.Outcome = pipeline.Outcome{}
	forwarded := false
	m, _ := g.policy(pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) {
		forwarded = true
		return nil, errDecided
	})).ServeDNS(ctx, &r)
	d.Rule = r.Outcome.Rule
	if r.Route != "" {
		d.Route = r.Route
	}
	d.Tags = r.Tags
	if r.ECSAction != (pipeline.ECSAction{}) {
		d.ECS = ecsString(r.ECSAction)
	}
	d.AllowANY = r.AllowANY
	if !forwarded && m != nil {
		d.Answer = m
	}
	return d
}

func ecsString(a pipeline.ECSAction) string {
	return fmt.Sprintf("%s prefix=%s v4=/%d v6=/%d", a.Mode, a.Prefix, a.V4Bits, a.V6Bits)
}

// genStats counts what a generation answered while it was live, for the
// rollback watch: one atomic add per answer and one per latency, so every
// query can afford it.
type genStats struct {
	answers, servfails, fallbacks atomic.Int64
	lat                           canary.Histogram
}

func (st *genStats) record(req *pipeline.Request, m *dns.Msg, err error) {
	if errors.Is(err, pipeline.ErrDrop) {
		return
	}
	st.answers.Add(1)
	if err != nil || (m != nil && m.Rcode == dns.RcodeServerFailure) {
		st.servfails.Add(1)
	}
	if req.Outcome.Source == pipeline.SourceFallback {
		st.fallbacks.Add(1)
	}
	if !req.Received.IsZero() {
		st.lat.Observe(time.Since(req.Received))
	}
}

// window returns what g answered so far and its groups whose every
// path's breaker is open.
func (g *generation) window() canary.Window {
	var w canary.Window
	if st := g.stats; st != nil {
		w.Answers, w.Servfails, w.Fallbacks = st.answers.Load(), st.servfails.Load(), st.fallbacks.Load()
		w.P99 = st.lat.Snapshot().Quantile(0.99)
	}
	for name, grp := range g.groups {
		ps := grp.Paths()
		dark := len(ps) > 0
		for _, p := range ps {
			if p.Health == nil || p.Health.Snapshot().State != transport.Open {
				dark = false
				break
			}
		}
		if dark {
			w.DarkGroups = append(w.DarkGroups, name)
		}
	}
	return w
}
