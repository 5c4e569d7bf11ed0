package zone

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/internal/promreg"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/field"
)

// Zones serves the configured local, tenant and fallback zones. It holds
// an immutable snapshot of every Set behind an atomic pointer: a reload
// builds the changed zones completely and swaps in a new snapshot, so a
// query in flight keeps answering from the one it loaded and never sees a
// half-built zone. Safe for concurrent use; Close stops its poller.
type Zones struct {
	log      *slog.Logger
	interval time.Duration
	tenants  tenants
	local    bool // shared or tenant zones are configured
	fallback bool // fallback zones are configured

	snap atomic.Pointer[snapshot]

	mu      sync.Mutex // serializes reloads; guards lists, sources and unfollow
	lists   [][]*Zone  // listShared, listFallback, then one per tenant
	sources []*source  // zones read from files
	// api holds the position in lists[listShared] of every API zone by
	// origin; its entry is nil until Follow gives it content.
	api      map[string]int
	unfollow func() // stops the feed of API zones; nil before Follow

	reloads, reloadErrors, fallbackAnswers atomic.Uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// snapshot is every Set at one moment. It is never modified.
type snapshot struct {
	shared   *Set
	fallback *Set
	tenants  []*Set // by tenant index
}

const (
	listShared = iota
	listFallback
	listTenants // tenant i is list listTenants+i
)

// New validates cfg, loads every zone, and, when some zone comes from a
// file, starts one goroutine that checks the files every PollInterval
// (see Reload). Every problem is reported, joined, each a *field.Error:
// a zone file's problems at the file key of its zone ("zones[1].file"),
// with the file and line in the message. Metrics are registered
// with reg unless it is nil, replacing those of a previous generation.
// log may be nil. Close must be called to stop the goroutine.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Zones, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	z := &Zones{
		log:      log,
		interval: cmp.Or(cfg.PollInterval, DefaultPollInterval),
		tenants:  newTenants(cfg.Tenants),
		local:    len(cfg.Zones) > 0 || len(cfg.Tenants) > 0,
		fallback: len(cfg.Fallback) > 0,
		lists:    make([][]*Zone, listTenants+len(cfg.Tenants)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		api:      make(map[string]int),
	}
	var errs []error
	load := func(list int, at string, specs []ZoneSpec) {
		z.lists[list] = make([]*Zone, len(specs))
		for i, s := range specs {
			if s.API {
				origin, _ := canonOrigin(s.Origin)
				z.api[origin] = i
				continue
			}
			if s.File == "" {
				zn, err := FromRecords(s.Origin, s.Records)
				if err != nil {
					errs = append(errs, fmt.Errorf("zone %s: %w", s.Origin, err))
				}
				z.lists[list][i] = zn
				continue
			}
			origin, _ := canonOrigin(s.Origin)
			src := &source{origin: origin, path: s.File, list: list, pos: i}
			if _, err := z.refresh(src, true); err != nil {
				errs = append(errs, field.Wrap(field.Join(field.Index(at, i), "file"), err))
			}
			z.sources = append(z.sources, src)
		}
	}
	load(listShared, "zones", cfg.Zones)
	load(listFallback, "fallback", cfg.Fallback)
	for i, t := range cfg.Tenants {
		load(listTenants+i, field.Join(field.Index("tenants", i), "zones"), t.Zones)
	}
	if len(errs) == 0 {
		errs = append(errs, z.publish())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := z.Register(reg); err != nil {
		return nil, err
	}
	if len(z.sources) == 0 {
		close(z.done)
		return z, nil
	}
	go z.watch()
	return z, nil
}

// publish builds a snapshot of the current lists and makes it the one
// queries see. The caller holds mu (or is New).
func (z *Zones) publish() error {
	s := &snapshot{tenants: make([]*Set, len(z.lists)-listTenants)}
	var err error
	if s.shared, err = NewSet(z.lists[listShared]...); err != nil {
		return err
	}
	if s.fallback, err = NewSet(z.lists[listFallback]...); err != nil {
		return err
	}
	for i := range s.tenants {
		if s.tenants[i], err = NewSet(z.lists[listTenants+i]...); err != nil {
			return fmt.Errorf("tenant %s: %w", z.tenants.names[i], err)
		}
	}
	z.snap.Store(s)
	return nil
}

// Register registers the zones' metrics with reg (nil: none), replacing
// those of a previous generation, so that one Zones may serve several
// generations in turn.
func (z *Zones) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	if err := promreg.Replace(reg, z.collectors()...); err != nil {
		return fmt.Errorf("zone: register metrics: %w", err)
	}
	return nil
}

// Close stops the poller and the feed of API zones, and waits for the
// poller to end. It may be called more than once. Answering keeps working
// after Close, from the zones loaded last.
func (z *Zones) Close() error {
	z.closeOnce.Do(func() { close(z.stop) })
	<-z.done
	z.mu.Lock()
	stop := z.unfollow
	z.unfollow = nil
	z.mu.Unlock()
	if stop != nil {
		stop()
	}
	return nil
}

// Middleware returns the stage answering from the shared and tenant zones.
// A query with one question and opcode QUERY is answered from the zones of
// its tenant (see TenantSpec) when one contains its name, else from the
// shared zones when one does, else passed to next. The zone with the
// longest origin answers within each Set, so a tenant's zone overrides a
// shared one for the names it contains. When no shared or tenant zone is
// configured the stage is next itself.
func (z *Zones) Middleware() pipeline.Middleware {
	return func(next pipeline.Handler) pipeline.Handler {
		if !z.local {
			return next
		}
		return &local{z: z, next: next}
	}
}

// Fallback returns the stage answering from the fallback zones when every
// upstream path failed: next's error has pipeline.ErrUpstreamFailed in its
// chain and a fallback zone holds the query's name (a positive answer or
// NODATA: a name missing from the fallback zone, or a referral, passes the
// error on). The answer is NOERROR with AA clear, since it is no
// authority's truth, and, when the query has EDNS, an OPT carrying Extended
// DNS Error 22, No Reachable Authority (RFC 8914 §4.23), with the text
// "answer from fallback zone". Anything else next returns is passed on
// unchanged. Without fallback zones the stage is next itself.
func (z *Zones) Fallback() pipeline.Middleware {
	return func(next pipeline.Handler) pipeline.Handler {
		if !z.fallback {
			return next
		}
		return &fallback{z: z, next: next}
	}
}

// local is the handler Middleware returns.
type local struct {
	z    *Zones
	next pipeline.Handler
}

var _ pipeline.Handler = (*local)(nil)

// ServeDNS answers req from the tenant's or the shared zones, or calls
// next. It records the tenant it picked in req.Outcome, and the source
// (tenant zone or zone) when it answers.
func (h *local) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	q := req.Msg
	if q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 {
		return h.next.ServeDNS(ctx, req)
	}
	s := h.z.snap.Load()
	name := lowerFQDN(q.Question[0].Name)
	if t := h.z.tenants.pick(req); t >= 0 {
		req.Outcome.Tenant = h.z.tenants.names[t]
		if m, ok := s.tenants[t].answer(q, name); ok {
			req.Outcome.Source = pipeline.SourceTenantZone
			if !h.z.tenants.authorized(t, req) {
				// Not signed with one of the tenant's keys: an
				// authorization failure, refused as BIND's allow-query
				// { key ...; } does (signed with the query's key, when
				// it verified).
				r := new(dns.Msg)
				r.SetRcode(q, dns.RcodeRefused)
				return r, nil
			}
			return m, nil
		}
	}
	if m, ok := s.shared.answer(q, name); ok {
		req.Outcome.Source = pipeline.SourceZone
		return m, nil
	}
	return h.next.ServeDNS(ctx, req)
}

// fallback is the handler Fallback returns.
type fallback struct {
	z    *Zones
	next pipeline.Handler
}

var _ pipeline.Handler = (*fallback)(nil)

// fallbackText is the EXTRA-TEXT of the EDE of fallback answers.
const fallbackText = "answer from fallback zone"

// fallbackReason is the EDE text recorded in Request.Outcome for a
// fallback answer given because next failed with err: fallbackText and
// why the upstreams failed, as the *pipeline.Error in err tells it. It
// allocates, on this rare path only.
func fallbackReason(err error) string {
	var pe *pipeline.Error
	if errors.As(err, &pe) && pe.Text != "" {
		return fallbackText + ": " + pe.Text
	}
	return fallbackText
}

// ServeDNS calls next and answers from the fallback zones when it failed
// for want of an upstream, recording the source (fallback) and the EDE in
// req.Outcome.
func (h *fallback) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	m, err := h.next.ServeDNS(ctx, req)
	if err == nil || !errors.Is(err, pipeline.ErrUpstreamFailed) {
		return m, err
	}
	q := req.Msg
	if q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 {
		return m, err
	}
	fm, ok := h.z.snap.Load().fallback.Answer(q)
	if !ok || fm.Rcode != dns.RcodeSuccess || !fm.Authoritative {
		return m, err
	}
	fm.Authoritative = false
	if qopt := q.IsEdns0(); qopt != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(1232)
		opt.SetDo(qopt.Do())
		opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeNoReachableAuthority, ExtraText: fallbackText})
		fm.Extra = append(fm.Extra, opt)
	}
	req.Outcome.Source = pipeline.SourceFallback
	req.Outcome.SetEDE(dns.ExtendedErrorCodeNoReachableAuthority, fallbackReason(err))
	h.z.fallbackAnswers.Add(1)
	h.z.log.Debug("answered from the fallback zone", "question", q.Question[0].String(), "cause", err, "trace_id", req.Trace())
	return fm, nil
}
