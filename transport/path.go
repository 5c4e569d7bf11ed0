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
	// Stream is the TCP side of a UDP path: the same address over TCP,
	// with its own exchanger and health (PathID proto "tcp"). A truncated
	// UDP answer is retried there as an exchange of its own, and later
	// rounds of a query whose UDP attempts all timed out go there. Nil
	// for every other protocol.
	Stream *Path

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
// which paths are broken. It is safe for concurrent use.
type Registry struct {
	log *slog.Logger
	mu  sync.Mutex
	cfg HealthConfig
	m   map[PathID]*Health
}

// NewRegistry returns an empty registry whose new entries use cfg and log
// their breaker transitions to log, with the path. A nil log discards.
func NewRegistry(cfg HealthConfig, log *slog.Logger) *Registry {
	return &Registry{cfg: cfg, log: log, m: make(map[PathID]*Health)}
}

// SetConfig changes the configuration used for paths created from now on.
// Existing health keeps its configuration: a reload that changes breaker
// settings applies them to new paths and, through Prune and re-creation,
// not to live state mid-flight.
// It returns the configuration it replaced.
func (r *Registry) SetConfig(cfg HealthConfig) HealthConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cfg
	r.cfg = cfg
	return old
}

// Health returns the health of id, creating it closed and unmeasured.
func (r *Registry) Health(id PathID) *Health {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.m[id]
	if !ok {
		cfg := r.cfg
		if r.log != nil {
			cfg.Logger = r.log.With("path", id.String())
		}
		h = NewHealth(cfg)
		r.m[id] = h
	}
	return h
}

// Prune forgets every path for which keep returns false.
func (r *Registry) Prune(keep func(PathID) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.m {
		if !keep(id) {
			delete(r.m, id)
		}
	}
}

// Len returns the number of paths with health.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}
