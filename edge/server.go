package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsedge/dnsedge/edge/drill"
	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	edgetls "github.com/dnsedge/dnsedge/tls"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Server is a running dnsedge: listeners feeding the current generation's
// pipeline, the pool of parts that outlive generations (path health among
// them), and the HTTP endpoint for metrics and probes.
type Server struct {
	log     *slog.Logger
	auditMu sync.Mutex // one operations audit line at a time (writeAudit)
	level   *slog.LevelVar
	out     io.Writer // human-readable start-up summary
	health  *transport.Registry
	loop    *middleware.Loop
	prom    *prometheus.Registry
	lmet    *listen.Metrics
	limiter *listen.RateLimiter // the clients' buckets, kept across reloads
	reloads *prometheus.CounterVec
	pool    *pool
	drills  *drill.Manager // kept across reloads, like the paths' health
	// tickets and quicKeys are the session ticket keys of the TLS
	// listeners and the keys of the QUIC transports: the server's, not a
	// listener's, so a new process can take them over (state.go).
	tickets  *edgetls.TicketKeys
	quicKeys *listen.QUICKeys
	now      func() time.Time // the wall clock of state hand-over

	// life ends when Close begins: a reload under way (resolving,
	// issuing a certificate) gives up.
	life    context.Context
	endLife context.CancelFunc

	gen atomic.Pointer[generation]

	// reloadMu serialises Start and Reload while they build; mu guards
	// what they commit and what Close tears down, and is held only
	// briefly, so Close never waits for a reload's build.
	reloadMu  sync.Mutex
	mu        sync.Mutex
	front     *hold // the listeners, certificates and HTTP endpoint in force
	listeners map[listenerKey]*liveListener
	httpEnd   *httpEndpoint
	retiring  map[*generation]*time.Timer // old generations waiting to close
	started   atomic.Bool
	closed    bool

	// genSeq numbers committed generations (see stampGen); guarded by mu.
	genSeq uint64
	// status holds what /status shows beyond the server's own state.
	status statusState
	// clock runs the canary's verdicts and the rollback watch; load
	// re-reads the configuration file (nil without one).
	clock clockwork.Clock
	load  func() (*Config, error)
	// The canary under way or the last one (canaryRun, guarded by
	// canaryMu), and the hook the live generation's tap reads.
	canaryHook    *canaryHook
	canaryMu      sync.Mutex
	canaryRun     *canaryRun
	canaryMetrics *canaryMetrics
	// watch is the rollback watch under way; lastRollback the last
	// rollback. Both guarded by mu.
	watch        *watch
	lastRollback *rollbackEvent
	// inherit are the sockets handed over by the process this one
	// replaces, or kept for taking back (upgrade.go); quicGate holds
	// back the reading of inherited QUIC sockets. Both are set before
	// Start and by Resume, under reloadMu.
	inherit  *listen.Inherited
	quicGate <-chan struct{}
	// quicRouting marks the QUIC connection IDs of this process and
	// forwards packets to the process replacing it (upgrade.go).
	quicRouting *listen.QUICRouting
	// drained are the listeners Drain stopped, until they are done.
	drained sync.WaitGroup
	version string // answered to version.bind
}

// listener is what the server needs of every listener kind.
type listener interface {
	Serve() error
	Close() error
	Addr() netip.AddrPort
	SetLimits(listen.Limits) error
}

// Options are the parts of a server that do not come from the file.
type Options struct {
	Logger *slog.Logger
	// Level is the level of Logger, set from the file's log.level by New
	// and by every reload; nil leaves the level alone.
	Level *slog.LevelVar
	// Out receives the human-readable summary printed at start; nil
	// discards it.
	Out io.Writer
	// Version is the version of the binary: exported as
	// dnsedge_build_info ("dev" when empty), shown on /status, and
	// answered to version.bind (CH TXT; nothing when empty).
	Version string
	// Load re-reads the configuration file, for a canary or a reload
	// asked for through the admin API; nil when there is no file.
	Load func() (*Config, error)
	// Clock runs the drills' deadlines, the canary's verdicts and the
	// rollback watch; the real clock when nil.
	Clock clockwork.Clock
	// Inherited are the sockets handed over by the process this one
	// replaces (a binary upgrade): Start takes its listeners' sockets
	// from them and binds only the rest. nil binds everything.
	Inherited *listen.Inherited
	// QUICGate, with Inherited, holds back the reading of the inherited
	// QUIC sockets until it is closed.
	QUICGate <-chan struct{}
	// QUICMarker is the first byte of the QUIC connection IDs this
	// process issues: 0 when started afresh, the old process's plus one
	// after an upgrade (see listen.QUICRouting).
	QUICMarker byte
}

// New returns a server for cfg; nothing is bound until Start.
func New(cfg *Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	prom := prometheus.NewRegistry()
	s := &Server{
		log: log, level: opts.Level, out: out, prom: prom,
		inherit: opts.Inherited, quicGate: opts.QUICGate, version: opts.Version,
		health:    transport.NewRegistry(cfg.Health.HealthConfig(), log),
		loop:      middleware.NewLoop(log),
		lmet:      listen.NewMetrics(prom),
		pool:      newPool(),
		tickets:   edgetls.NewTicketKeys(nil),
		quicKeys:  newQUICKeys(),
		now:       time.Now,
		listeners: make(map[listenerKey]*liveListener),
		retiring:  make(map[*generation]*time.Timer),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsedge_config_reloads_total", Help: "Configuration reloads by result.",
		}, []string{"result"}),
	}
	s.quicRouting = listen.NewQUICRouting(opts.QUICMarker, prom, log)
	var err error
	if s.limiter, err = listen.NewRateLimiter(cfg.RateLimit, nil); err != nil {
		return nil, fmt.Errorf("rate_limit: %w", err)
	}
	s.clock, s.load, s.canaryHook = opts.Clock, opts.Load, new(canaryHook)
	if s.clock == nil {
		s.clock = clockwork.NewRealClock()
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	s.drills = s.newDrills(opts)
	s.canaryMetrics = newCanaryMetrics(prom)
	s.reloads.WithLabelValues("ok")
	s.reloads.WithLabelValues("failed")
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	exchanges := exchangeVec()
	prom.MustRegister(s.reloads, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&pathCollector{s: s}, exchanges, &infoCollector{s: s, version: version})
	s.observeExchanges(exchanges)
	s.status.version, s.status.started = version, time.Now()
	s.status.canary = func() any {
		if st := s.CanaryStatus(); st.State != CanaryNone {
			return st
		}
		return nil
	}
	s.status.rollback = func() any {
		if st := s.RollbackStatus(); st.Watching || st.Last != nil {
			return st
		}
		return nil
	}
	s.status.drills = func() any {
		if st := s.DrillStatus(); len(st.Active)+len(st.Recent) > 0 {
			return st
		}
		return nil
	}
	gen, err := s.build(cfg)
	if err != nil {
		s.endLife()
		return nil, err
	}
	s.stampGen(gen)
	s.gen.Store(gen)
	s.setLevel(cfg)
	s.commitDrills(gen)
	return s, nil
}

// build makes a generation of cfg, taking what it can from the pool. On
// error nothing of it is left.
func (s *Server) build(cfg *Config) (*generation, error) {
	d := buildDeps{log: s.log, registry: s.health, loop: s.loop, drills: s.drills, resolveTimeout: 3 * time.Second,
		hook: s.canaryHook, ops: s.registerOps, version: s.version}
	return buildGeneration(s.life, cfg, s.pool.hold(), d)
}

func (s *Server) setLevel(cfg *Config) {
	if s.level != nil {
		SetLevel(s.level, cfg.Log)
	}
}

// handler returns the current pipeline; listeners call it per query.
func (s *Server) handler() pipeline.Handler { return s.gen.Load().handler }

// Start binds every listener and the metrics endpoint and starts serving.
// A listener that cannot be bound fails the start (optional ones are
// skipped with a warning), and everything bound so far is closed again.
func (s *Server) Start() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.serveFront(true)
}

// serveFront binds the listeners of the generation in force and serves
// them, printing the summary when summary is set; the caller holds
// reloadMu.
func (s *Server) serveFront(summary bool) error {
	gen := s.gen.Load()
	fp, err := s.planFront(s.life, gen.cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		fp.parts.release()
		return errServerClosed
	}
	s.commitFront(fp)
	s.started.Store(true)
	if summary {
		s.summary(gen)
	}
	return nil
}

// Reload builds a new generation from cfg and swaps it in atomically, only
// if everything builds and every new listener binds: it plans, then
// commits or aborts. A failed reload changes nothing. What the new
// configuration describes as before (upstreams, cache, certificates,
// listeners, the HTTP endpoint) is kept running, not built again: a
// reload of an unchanged file resolves nothing and opens no connection.
// Close during a reload makes the reload give up.
func (s *Server) Reload(cfg *Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.life.Err() != nil {
		return errors.New("server closed")
	}
	gen, err := s.build(cfg)
	if err != nil {
		return s.reloadFailed(err)
	}
	if err := s.install(gen); err != nil {
		gen.close()
		if errors.Is(err, errServerClosed) {
			return err
		}
		return s.reloadFailed(err)
	}
	s.reloads.WithLabelValues("ok").Inc()
	s.mu.Lock()
	s.log.Info("configuration reloaded", "listeners", len(s.listeners), "paths", len(gen.paths()))
	s.mu.Unlock()
	// A canary tried against the configuration replaced has no live
	// configuration to be compared with any more.
	if err := s.AbortCanary("a reload replaced the live configuration"); err != nil && !errors.Is(err, ErrNoCanary) {
		s.log.Warn("canary aborted with errors", "error", err.Error())
	}
	return nil
}

var errServerClosed = errors.New("server closed")

// install commits gen: the listeners its configuration needs are planned
// (bound, or kept), then the generation swapped in and the front
// committed; the generation replaced is retired (see retire). The caller
// holds s.reloadMu; on error nothing changed and gen is the caller's.
func (s *Server) install(gen *generation) error {
	var fp *frontPlan
	if s.started.Load() {
		var err error
		if fp, err = s.planFront(s.life, gen.cfg); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		if fp != nil {
			fp.parts.release()
		}
		return errServerClosed
	}
	s.stampGen(gen)
	old := s.gen.Swap(gen)
	s.health.SetConfig(gen.cfg.Health.HealthConfig())
	s.setLevel(gen.cfg)
	s.commitDrills(gen)
	if fp != nil {
		s.commitFront(fp)
	}
	// Queries in flight on the old generation finish on it.
	s.retire(old, gen)
	return nil
}

func (s *Server) reloadFailed(err error) error {
	s.reloads.WithLabelValues("failed").Inc()
	if s.life.Err() != nil {
		return errors.New("reload: server closed")
	}
	return fmt.Errorf("reload: %w", err)
}

// Close stops every listener and the HTTP endpoint and closes the current
// generation. Queries in flight are given the listeners' drain time. A
// reload under way gives up rather than hold Close up.
func (s *Server) Close() error {
	s.endLife()
	if err := s.AbortCanary("server closed"); err != nil && !errors.Is(err, ErrNoCanary) {
		s.log.Warn("canary aborted with errors", "error", err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	errs := []error{s.drills.Close()}
	var wg sync.WaitGroup
	for _, ll := range s.listeners {
		wg.Add(1)
		go func() { defer wg.Done(); ll.close() }()
	}
	wg.Wait()
	// Only now: a DoQ listener closing still forwards what is the new
	// process's, which this one would answer with stateless resets.
	s.quicRouting.Stop()
	errs = append(errs, s.front.release())
	s.listeners, s.httpEnd = nil, nil
	if w := s.watch; w != nil {
		s.watch = nil
		close(w.stop)
		errs = append(errs, w.old.close())
	}
	for old, t := range s.retiring {
		t.Stop()
		errs = append(errs, old.close())
	}
	clear(s.retiring)
	errs = append(errs, s.gen.Load().close())
	return errors.Join(errs...)
}

// Addrs returns the bound address of every listener by proto, for tests
// and the start-up summary.
func (s *Server) Addrs() map[string][]netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]netip.AddrPort)
	for k, ll := range s.listeners {
		out[k.proto] = append(out[k.proto], ll.l.Addr())
	}
	return out
}

// MetricsAddr returns the bound address of the HTTP endpoint, nil if none.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpEnd == nil {
		return nil
	}
	return s.httpEnd.addr
}

// Groups returns the current generation's groups, for tests and status.
func (s *Server) Groups() map[string]*transport.Group { return s.gen.Load().groups }
