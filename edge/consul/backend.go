package consul

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jonboulle/clockwork"
)

// Backend answers names under the configured domain from Consul's
// health view. It owns one watch per service (and per node) asked for,
// started by the first query and stopped once idle for IdleAfter. Safe
// for concurrent use; Close stops every watch.
type Backend struct {
	cfg   Config
	log   *slog.Logger
	clock clockwork.Clock
	fetch fetchers

	mu       sync.Mutex
	services map[watchKey]*watch[[]instance]
	nodes    map[watchKey]*watch[nodeView]
	closed   bool

	stats stats

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// watchKey names a watch: a service or node name and a datacenter.
type watchKey struct{ name, dc string }

// stats are the backend's counters, summed over every watch it ran.
type stats struct {
	started, stopped, stale, firstTimeouts atomic.Uint64
	// requests, errors and swaps of the watches already stopped, so
	// that the totals never go down.
	requests, errors, swaps atomic.Uint64
}

// retire adds a stopped watch's counters to the totals.
func (s *stats) retire(requests, errors, swaps uint64) {
	s.requests.Add(requests)
	s.errors.Add(errors)
	s.swaps.Add(swaps)
	s.stopped.Add(1)
}

// Options are what a Backend takes besides its configuration.
type Options struct {
	// Logger may be nil.
	Logger *slog.Logger
	// Clock drives watch pacing, backoff, ages and idling; nil: the
	// real clock.
	Clock clockwork.Clock
	// Client overrides the Consul client built from the configuration
	// (tests that point it at a fake agent); nil builds one.
	Client *api.Client
}

// New checks cfg and returns a backend for it; watches start with the
// queries. cfg must be on (an address) and have its defaults.
func New(cfg Config, opts Options) (*Backend, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client := opts.Client
	if client == nil {
		var err error
		if client, err = NewClient(cfg); err != nil {
			return nil, err
		}
	}
	b := &Backend{
		cfg:      cfg,
		log:      opts.Logger,
		clock:    opts.Clock,
		fetch:    fetchers{client: client},
		services: make(map[watchKey]*watch[[]instance]),
		nodes:    make(map[watchKey]*watch[nodeView]),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.clock == nil {
		b.clock = clockwork.NewRealClock()
	}
	go b.reap()
	return b, nil
}

// NewClient returns a Consul API client for cfg's address, token and TLS.
func NewClient(cfg Config) (*api.Client, error) {
	u, err := cfg.httpAddress()
	if err != nil {
		return nil, fmt.Errorf("consul address: %w", err)
	}
	ac := api.DefaultConfig()
	ac.Address = u.Host
	ac.Scheme = u.Scheme
	if cfg.TokenFile != "" {
		tok, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("consul token: %w", err)
		}
		ac.Token = strings.TrimSpace(string(tok))
	}
	if u.Scheme == "https" || cfg.TLS != (TLSConfig{}) {
		ac.Scheme = "https"
		ac.TLSConfig = api.TLSConfig{Address: cfg.TLS.ServerName, CAFile: cfg.TLS.CAFile, CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile}
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return c, nil
}

// Close stops every watch and waits for them. Answering after Close
// keeps working from the last views, without new watches.
func (b *Backend) Close() error {
	b.once.Do(func() {
		close(b.stop)
		<-b.done
		b.mu.Lock()
		b.closed = true
		ss, ns := b.services, b.nodes
		b.services, b.nodes = map[watchKey]*watch[[]instance]{}, map[watchKey]*watch[nodeView]{}
		b.mu.Unlock()
		for _, w := range ss {
			w.stop()
		}
		for _, w := range ns {
			w.stop()
		}
	})
	return nil
}

// service returns the watch of a service, starting it when there is none.
// It returns nil after Close.
func (b *Backend) service(name, dc string) *watch[[]instance] {
	k := watchKey{name, dc}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w, ok := b.services[k]; ok {
		return w
	}
	if b.closed {
		return nil
	}
	w := newWatch(b.fetch.service(name, dc), equalInstances, b.clock)
	w.onSwap = func(v []instance) {
		b.log.Debug("consul service view changed", "service", name, "datacenter", dc, "instances", len(v))
	}
	b.services[k] = w
	b.stats.started.Add(1)
	w.start()
	return w
}

// node returns the watch of a node, starting it when there is none; nil
// after Close.
func (b *Backend) node(name, dc string) *watch[nodeView] {
	k := watchKey{name, dc}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w, ok := b.nodes[k]; ok {
		return w
	}
	if b.closed {
		return nil
	}
	w := newWatch(b.fetch.node(name, dc), func(a, b nodeView) bool { return a == b }, b.clock)
	b.nodes[k] = w
	b.stats.started.Add(1)
	w.start()
	return w
}

func equalInstances(a, b []instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// reapEvery is how often idle watches are looked for: a quarter of
// IdleAfter, at most a minute.
func (b *Backend) reapEvery() time.Duration { return min(b.cfg.IdleAfter/4, time.Minute) }

// reap stops the watches nobody asked for in IdleAfter, until Close.
func (b *Backend) reap() {
	defer close(b.done)
	t := b.clock.NewTicker(b.reapEvery())
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.Chan():
		}
		b.reapIdle()
	}
}

// reapIdle stops the idle watches now.
func (b *Backend) reapIdle() {
	cut := b.clock.Now().Add(-b.cfg.IdleAfter).UnixNano()
	var stops []func()
	b.mu.Lock()
	for k, w := range b.services {
		if w.lastUsed.Load() < cut {
			delete(b.services, k)
			stops = append(stops, func() { w.stop(); b.stats.retire(w.requests.Load(), w.errors.Load(), w.swaps.Load()) })
		}
	}
	for k, w := range b.nodes {
		if w.lastUsed.Load() < cut {
			delete(b.nodes, k)
			stops = append(stops, func() { w.stop(); b.stats.retire(w.requests.Load(), w.errors.Load(), w.swaps.Load()) })
		}
	}
	b.mu.Unlock()
	for _, s := range stops {
		s()
	}
}

// Watches returns the number of running watches.
func (b *Backend) Watches() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.services) + len(b.nodes)
}

// waitFirst waits for w's first view, up to FirstWait.
func waitFirst[T any](ctx context.Context, b *Backend, w *watch[T]) (T, time.Duration, bool) {
	w.touch()
	if v, age, ok := w.get(); ok {
		return v, age, true
	}
	if !w.waitReady(ctx, b.cfg.FirstWait) {
		b.stats.firstTimeouts.Add(1)
		var zero T
		return zero, 0, false
	}
	return w.get()
}
