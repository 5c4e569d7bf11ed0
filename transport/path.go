package transport

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
)

// PathID identifies a path: one upstream, one protocol, one address. Health
// is keyed by it, so it survives reloads and re-resolution as long as the
// path itself exists.
type PathID struct {
	Upstream string
	Proto    string // the endpoint's scheme: "udp", "tcp", "tls", "https" or "quic"
	Addr     netip.AddrPort
}

func (id PathID) String() string {
	return fmt.Sprintf("%s/%s/%s", id.Upstream, id.Proto, id.Addr)
}

// A Path is one way of reaching an upstream: an exchanger for one address
// over one protocol, pinned to that address's family, with its own health.
// A failure on one path never changes another path's health.
type Path struct {
	ID        PathID
	Family    Family
	Exchanger Exchanger
	Health    *Health
	// reg holds Health for the path, released when the path closes; nil
	// when the health is not the registry's.
	reg    *Registry
	closed atomic.Bool
	// Stream is the TCP side of a UDP path: the same address over TCP,
	// with its own exchanger and health (PathID proto "tcp"). A truncated
	// UDP answer is retried there as an exchange of its own, and later
	// rounds of a query whose UDP attempts all timed out go there. Nil
	// for every other protocol.
	Stream *Path

	// fault is the path's cell in the registry for a drill's fault; nil
	// when the path's health is not the registry's. An exchange on a
	// path with no fault pays one atomic load for it.
	fault *faultCell

	name atomic.Pointer[string] // ID.String(), once asked (see Name)
}

func (p *Path) String() string { return p.Name() }

// Name returns p.ID.String(), formatted the first time only: the forward
// handler names the path of every query it answers, and must not allocate
// for it each time. Safe for concurrent use.
func (p *Path) Name() string {
	if s := p.name.Load(); s != nil {
		return *s
	}
	s := p.ID.String()
	p.name.Store(&s)
	return s
}

// Registry owns the health of every path. The running server keeps one
// registry across configuration generations, so a reload does not forget
// which paths are broken: a path's health lives while any path object
// holds it (Health acquires, Release lets go), whichever generation or
// re-resolution made the path. It is safe for concurrent use.
type Registry struct {
	log *slog.Logger
	mu  sync.Mutex
	cfg HealthConfig
	m   map[PathID]*held
	// exchanges returns the observer of a path's exchange times, and
	// forget lets go of it; nil records none. See ObserveExchanges.
	exchanges func(PathID) Observer
	forget    func(PathID)
}

// Observer takes one measurement, in seconds, such as a Prometheus
// histogram's Observe. Implementations are safe for concurrent use.
type Observer interface {
	Observe(float64)
}

// ObserveExchanges makes every path whose health the registry creates
// from now on report the duration of each exchange attempt (whatever its
// outcome) to the observer observe returns for the path; observe is
// called once per path, not per exchange, and forget (if not nil) once
// the registry forgets the path, so that its series can go. Call it
// before the first path is made: health made before keeps no observer.
// Both are called with the registry's lock held.
func (r *Registry) ObserveExchanges(observe func(PathID) Observer, forget func(PathID)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exchanges, r.forget = observe, forget
}

type held struct {
	h     *Health
	refs  int
	fault faultCell // a drill's fault on the path; nil almost always
}

// NewRegistry returns an empty registry whose entries use cfg and log
// their breaker transitions to log, with the path. A nil log discards.
func NewRegistry(cfg HealthConfig, log *slog.Logger) *Registry {
	return &Registry{cfg: cfg, log: log, m: make(map[PathID]*held)}
}

// SetConfig changes the configuration of every path's health, live ones
// included: breaker thresholds, cooldowns, timeouts and demotion apply
// from the next exchange on. Measured state (RTT, failures, breaker
// state, loss) is kept.
func (r *Registry) SetConfig(cfg HealthConfig) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg = cfg
	for id, e := range r.m {
		e.h.setConfig(r.configFor(id))
	}
}

func (r *Registry) configFor(id PathID) HealthConfig {
	cfg := r.cfg
	if r.log != nil {
		cfg.Logger = r.log.With("path", id.String())
	}
	return cfg
}

// Health returns the health of id, creating it closed and unmeasured, and
// holds it until a matching Release.
func (r *Registry) Health(id PathID) *Health {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[id]
	if !ok {
		e = &held{h: NewHealth(r.configFor(id))}
		if r.exchanges != nil {
			e.h.exchanges = r.exchanges(id)
		}
		r.m[id] = e
	}
	e.refs++
	return e.h
}

// Release lets go of the health of id taken by Health; the registry
// forgets it when nothing holds it any more.
func (r *Registry) Release(id PathID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[id]; ok {
		if e.refs--; e.refs <= 0 {
			delete(r.m, id)
			if e.h.exchanges != nil && r.forget != nil {
				r.forget(id)
			}
		}
	}
}

// Len returns the number of paths with health.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}
