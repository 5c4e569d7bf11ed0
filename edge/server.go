package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	edgetls "github.com/dnsedge/dnsedge/tls"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Server is a running dnsedge: listeners feeding the current generation's
// pipeline, a health registry that outlives generations, and the HTTP
// endpoint for metrics and probes.
type Server struct {
	log     *slog.Logger
	out     io.Writer // human-readable start-up summary
	health  *transport.Registry
	loop    *middleware.Loop
	prom    *prometheus.Registry
	lmet    *listen.Metrics
	reloads *prometheus.CounterVec

	gen atomic.Pointer[generation]

	mu        sync.Mutex // serialises Start, Reload and Close
	listeners map[string]listener
	certs     *certStore
	http      *http.Server
	httpAddr  net.Addr
	retiring  map[*generation]*time.Timer // old generations waiting to close
	started   atomic.Bool
	closed    bool
}

// listener is what the server needs of every listener kind.
type listener interface {
	Serve() error
	Close() error
	Addr() netip.AddrPort
}

// Options are the parts of a server that do not come from the file.
type Options struct {
	Logger *slog.Logger
	// Out receives the human-readable summary printed at start; nil
	// discards it.
	Out io.Writer
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
		log: log, out: out, prom: prom,
		health:    transport.NewRegistry(cfg.Health.HealthConfig(), log),
		loop:      middleware.NewLoop(log),
		lmet:      listen.NewMetrics(prom),
		listeners: make(map[string]listener),
		certs:     newCertStore(log),
		retiring:  make(map[*generation]*time.Timer),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsedge_config_reloads_total", Help: "Configuration reloads by result.",
		}, []string{"result"}),
	}
	s.reloads.WithLabelValues("ok")
	s.reloads.WithLabelValues("failed")
	prom.MustRegister(s.reloads, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&pathCollector{s: s})
	gen, err := s.build(cfg)
	if err != nil {
		return nil, err
	}
	s.gen.Store(gen)
	return s, nil
}

func (s *Server) build(cfg *Config) (*generation, error) {
	return buildGeneration(cfg, buildDeps{log: s.log, registry: s.health, loop: s.loop, resolveTimeout: 3 * time.Second, prev: s.gen.Load()})
}

// handler returns the current pipeline; listeners call it per query.
func (s *Server) handler() pipeline.Handler { return s.gen.Load().handler }

// listenerKey identifies listener l of c across reloads: its proto and
// address first, then, when any is set, the settings a running listener
// cannot change: path, http3, h2c, server name, padding, and the client
// certificate policy of its tls section. A listener whose key changes is
// replaced. Its certificate is not part of the key: a running listener
// takes a new one at its next handshake.
func (c *Config) listenerKey(l ListenerSpec) string {
	k := l.Proto + " " + l.Address
	if l.Path != "" || l.HTTP3 || l.H2C || l.ServerName != "" || l.Padding != nil {
		k += fmt.Sprintf(" path=%q http3=%v h2c=%v server_name=%q padding=%v", l.Path, l.HTTP3, l.H2C, l.ServerName, l.Padding == nil || *l.Padding)
	}
	if t := listenerTLS(c, l); t != nil && (t.ClientAuth != "" || t.ClientCA != "") {
		k += fmt.Sprintf(" client_auth=%q client_ca=%q", t.ClientAuth, t.ClientCA)
	}
	return k
}

// Start binds every listener and the metrics endpoint and starts serving.
// A listener that cannot be bound fails the start (optional ones are
// skipped with a warning), and everything bound so far is closed again.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := s.gen.Load()
	plan, err := s.certs.prepare(gen.cfg)
	if err != nil {
		return err
	}
	bound, err := s.bind(gen.cfg, nil, plan)
	if err != nil {
		plan.abort()
		return err
	}
	s.certs.commit(plan, func(k string) bool { _, ok := bound[k]; return ok })
	for k, l := range bound {
		s.listeners[k] = l
		go s.serve(l)
	}
	if a := gen.cfg.Metrics.Address; a != "" {
		if err := s.startHTTP(a); err != nil {
			for _, l := range bound {
				l.Close()
			}
			return err
		}
	}
	s.started.Store(true)
	s.summary(gen)
	return nil
}

// bind opens the listeners of cfg that are not in keep.
func (s *Server) bind(cfg *Config, keep map[string]listener, plan *certPlan) (map[string]listener, error) {
	bound := make(map[string]listener)
	for _, spec := range cfg.Listeners {
		k := cfg.listenerKey(spec)
		if _, ok := keep[k]; ok {
			continue
		}
		l, err := s.open(spec, cfg, plan)
		if err != nil {
			if spec.Optional {
				s.log.Warn("optional listener not started", "proto", spec.Proto, "address", spec.Address, "error", err.Error())
				continue
			}
			for _, b := range bound {
				b.Close()
			}
			return nil, fmt.Errorf("listen %s %s: %w", spec.Proto, spec.Address, err)
		}
		bound[k] = l
	}
	return bound, nil
}

func (s *Server) open(spec ListenerSpec, cfg *Config, plan *certPlan) (listener, error) {
	ap, err := netip.ParseAddrPort(spec.Address)
	if err != nil {
		return nil, err
	}
	lc := listen.Config{
		Addr: ap, Handler: s.handler, Logger: s.log, Metrics: s.lmet,
		Limits: listen.Limits{
			QueryTimeout: cfg.Server.QueryTimeout, MaxConcurrent: cfg.Server.MaxConcurrent,
			IdleTimeout: cfg.Server.TCPIdleTimeout, ReadTimeout: cfg.Server.TCPReadTimeout,
			MaxConns: cfg.Server.MaxTCPConns, MaxQueriesPerConn: cfg.Server.MaxTCPQueries,
		},
		ServerName: spec.ServerName, NoPadding: spec.Padding != nil && !*spec.Padding,
		HTTPPath: spec.Path, H2C: spec.H2C, HTTP3: spec.HTTP3,
	}
	if spec.encrypted() {
		if lc.TLS, err = s.certs.tlsConfig(plan, cfg.listenerKey(spec)); err != nil {
			return nil, err
		}
	}
	switch spec.Proto {
	case "udp":
		return listen.ListenUDP(lc)
	case "tcp":
		return listen.ListenTCP(lc)
	case "dot":
		return listen.ListenDoT(lc)
	case "doh":
		return listen.ListenDoH(lc)
	case "doq":
		return listen.ListenDoQ(lc)
	}
	return nil, fmt.Errorf("unknown proto %q", spec.Proto)
}

func (s *Server) serve(l listener) {
	if err := l.Serve(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Error("listener stopped", "address", l.Addr().String(), "error", err.Error())
	}
}

// Reload builds a new generation from cfg and swaps it in atomically, only
// if everything builds and every new listener binds. A failed reload
// changes nothing. Unchanged listeners keep their sockets.
func (s *Server) Reload(cfg *Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server closed")
	}
	gen, err := s.build(cfg)
	if err != nil {
		s.reloads.WithLabelValues("failed").Inc()
		return fmt.Errorf("reload: %w", err)
	}
	var (
		added map[string]listener
		plan  *certPlan
	)
	if s.started.Load() {
		if plan, err = s.certs.prepare(cfg); err != nil {
			gen.close()
			s.health.SetConfig(s.gen.Load().cfg.Health.HealthConfig())
			s.reloads.WithLabelValues("failed").Inc()
			return fmt.Errorf("reload: %w", err)
		}
		replaced := s.replaceChanged(cfg)
		if added, err = s.bind(cfg, s.listeners, plan); err != nil {
			s.restore(replaced)
			plan.abort()
			gen.close()
			s.health.SetConfig(s.gen.Load().cfg.Health.HealthConfig())
			s.reloads.WithLabelValues("failed").Inc()
			return fmt.Errorf("reload: %w", err)
		}
	}
	old := s.gen.Swap(gen)
	if old.cfg.Server != cfg.Server {
		s.log.Warn("server limits changed: they apply to listeners opened from now on; restart to apply them to the running ones")
	}
	want := make(map[string]bool)
	for _, l := range cfg.Listeners {
		want[cfg.listenerKey(l)] = true
	}
	for k, l := range s.listeners {
		if !want[k] {
			l.Close()
			delete(s.listeners, k)
		}
	}
	for k, l := range added {
		s.listeners[k] = l
		go s.serve(l)
	}
	if plan != nil {
		s.certs.commit(plan, func(k string) bool { _, ok := s.listeners[k]; return ok })
	}
	live := make(map[transport.PathID]bool)
	for _, p := range gen.paths() {
		live[p.ID] = true
	}
	// Let queries in flight on the old generation finish, then release it.
	s.retiring[old] = time.AfterFunc(old.cfg.Server.QueryTimeout+time.Second, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.retiring[old]; !ok {
			return // Close got there first
		}
		delete(s.retiring, old)
		old.close()
		s.health.Prune(func(id transport.PathID) bool { return s.hasPath(id) })
	})
	s.reloads.WithLabelValues("ok").Inc()
	s.log.Info("configuration reloaded", "listeners", len(s.listeners), "paths", len(live))
	return nil
}

// replaceChanged closes the running listeners that cfg changes in place:
// those whose settings differ while a listener of cfg needs one of their
// sockets. They cannot keep running beside their replacement, so they
// stop first (their queries in flight are answered) and are returned, to
// be reopened by restore if the reload fails after all.
func (s *Server) replaceChanged(cfg *Config) map[string]ListenerSpec {
	want := make(map[string]bool)
	needed := make(map[string]bool)
	for _, l := range cfg.Listeners {
		k := cfg.listenerKey(l)
		want[k] = true
		if _, running := s.listeners[k]; !running {
			for _, sock := range l.sockets() {
				needed[sock] = true
			}
		}
	}
	replaced := make(map[string]ListenerSpec)
	cur := s.gen.Load().cfg
	for _, spec := range cur.Listeners {
		k := cur.listenerKey(spec)
		l, running := s.listeners[k]
		if !running || want[k] {
			continue
		}
		for _, sock := range spec.sockets() {
			if needed[sock] && !strings.HasSuffix(spec.Address, ":0") {
				s.log.Info("replacing a listener whose settings changed", "proto", spec.Proto, "address", spec.Address)
				l.Close()
				delete(s.listeners, k)
				replaced[k] = spec
				break
			}
		}
	}
	return replaced
}

// restore reopens listeners replaceChanged closed, with their old
// settings and certificates, after a failed reload.
func (s *Server) restore(replaced map[string]ListenerSpec) {
	cfg := s.gen.Load().cfg
	for k, spec := range replaced {
		plan := &certPlan{byListener: make(map[string]*edgetls.Certs), ptrs: make(map[string]*atomic.Pointer[edgetls.Certs])}
		if ptr := s.certs.cur[k]; ptr != nil {
			plan.byListener[k] = ptr.Load()
		}
		l, err := s.open(spec, cfg, plan)
		if err != nil {
			s.log.Error("listener lost: reopening it after a failed reload failed", "proto", spec.Proto, "address", spec.Address, "error", err.Error())
			continue
		}
		s.listeners[k] = l
		go s.serve(l)
	}
}

func (s *Server) hasPath(id transport.PathID) bool {
	for _, p := range s.gen.Load().paths() {
		if p.ID == id {
			return true
		}
	}
	return false
}

// Close stops every listener and the HTTP endpoint and closes the current
// generation. Queries in flight are given the listeners' drain time.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	var wg sync.WaitGroup
	for _, l := range s.listeners {
		wg.Add(1)
		go func() { defer wg.Done(); l.Close() }()
	}
	wg.Wait()
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		errs = append(errs, s.http.Shutdown(ctx))
		cancel()
	}
	for old, t := range s.retiring {
		t.Stop()
		errs = append(errs, old.close())
	}
	clear(s.retiring)
	errs = append(errs, s.gen.Load().close())
	s.certs.close()
	return errors.Join(errs...)
}

// Addrs returns the bound address of every listener by proto, for tests
// and the start-up summary.
func (s *Server) Addrs() map[string][]netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]netip.AddrPort)
	for k, l := range s.listeners {
		proto := strings.Fields(k)[0]
		out[proto] = append(out[proto], l.Addr())
	}
	return out
}

// MetricsAddr returns the bound address of the HTTP endpoint, nil if none.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpAddr
}

// Groups returns the current generation's groups, for tests and status.
func (s *Server) Groups() map[string]*transport.Group { return s.gen.Load().groups }
