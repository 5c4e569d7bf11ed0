package listen

import (
	"errors"
	"github.com/dnsedge/dnsedge/internal/field"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Limits are the bounds of a listener that a reload may change while it
// serves (SetLimits on every listener type). They are the server section
// of the configuration file, whose keys the yaml tags name. Zero values
// take the documented defaults.
type Limits struct {
	// QueryTimeout is the budget of one query, given to the handler as the
	// ctx deadline. Default 4s.
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// MaxConcurrent bounds the queries being served at once by one
	// listener. Default 10000. UDP drops (and counts) queries beyond it;
	// TCP stops reading until one finishes.
	MaxConcurrent int `yaml:"max_concurrent"`

	// IdleTimeout closes a connection (TCP, DoT, DoH, DoQ) that has no
	// query in flight and sends none for this long (RFC 7766 §6.2.3).
	// Default 10s.
	IdleTimeout time.Duration `yaml:"tcp_idle_timeout"`
	// ReadTimeout is how long a message (a TCP or DoT frame, HTTP request
	// headers and body, a DoQ stream's query) may take to arrive whole once
	// it has begun, so a slow sender cannot hold a connection or a stream
	// (slowloris). Default 2s.
	ReadTimeout time.Duration `yaml:"tcp_read_timeout"`
	// MaxConns caps the open connections of one stream listener (TCP,
	// DoT, DoH, DoQ); a connection beyond it is closed as soon as it is
	// accepted. Default 1000.
	MaxConns int `yaml:"max_tcp_connections"`
	// MaxConnsPerClient caps the connections one client address may hold
	// open on a stream listener (TCP, DoT, DoH, DoQ), so one client cannot
	// take all of MaxConns. Default 64.
	MaxConnsPerClient int `yaml:"max_tcp_connections_per_client"`
	// MaxQueriesPerConn caps the queries in flight on one connection: TCP
	// and DoT pipelining (RFC 7766 §6.2.1.1; the connection is not read
	// while the cap is reached), HTTP/2 and HTTP/3 concurrent streams, DoQ
	// streams (QUIC flow control). Default 100.
	MaxQueriesPerConn int `yaml:"max_tcp_queries_per_connection"`
}

// Every listener type changes its limits while it serves.
var (
	_ interface{ SetLimits(Limits) error } = (*UDP)(nil)
	_ interface{ SetLimits(Limits) error } = (*TCP)(nil) // TCP and DoT
	_ interface{ SetLimits(Limits) error } = (*DoH)(nil)
	_ interface{ SetLimits(Limits) error } = (*DoQ)(nil)
)

// withDefaults validates l and fills in its defaults.
func (l Limits) withDefaults() (Limits, error) {
	if err := l.Validate(); err != nil {
		return l, err
	}
	return l.WithDefaults(), nil
}

// WithDefaults returns l with every zero value replaced by its default.
func (l Limits) WithDefaults() Limits {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&l.QueryTimeout, DefaultQueryTimeout}, {&l.IdleTimeout, DefaultIdleTimeout}, {&l.ReadTimeout, DefaultReadTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		v   *int
		def int
	}{{&l.MaxConcurrent, DefaultMaxConcurrent}, {&l.MaxConns, DefaultMaxConns}, {&l.MaxQueriesPerConn, DefaultMaxQueriesPerConn},
		{&l.MaxConnsPerClient, DefaultMaxConnsPerClient}} {
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	return l
}

// Validate reports every negative limit, as a field error at its key in
// the server section.
func (l Limits) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"query_timeout", l.QueryTimeout}, {"tcp_idle_timeout", l.IdleTimeout}, {"tcp_read_timeout", l.ReadTimeout}} {
		if d.v < 0 {
			errs = append(errs, field.Errorf(d.name, "%s must not be negative", d.v))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"max_concurrent", l.MaxConcurrent}, {"max_tcp_connections", l.MaxConns}, {"max_tcp_queries_per_connection", l.MaxQueriesPerConn},
		{"max_tcp_connections_per_client", l.MaxConnsPerClient}} {
		if n.v < 0 {
			errs = append(errs, field.Errorf(n.name, "%d must not be negative", n.v))
		}
	}
	return errors.Join(errs...)
}

// How a listener applies new Limits (SetLimits): every value is read
// where it is used, from an atomic pointer, so what changes applies from
// the next query, connection or read on:
//
//   - QueryTimeout: the budget of queries that start afterwards, and the
//     wait of Close; every listener.
//   - MaxConcurrent: the next query; every listener. TCP and DoT readers
//     that wait for a slot are woken when it grows.
//   - MaxConns and MaxConnsPerClient: the next connection accepted; TCP,
//     DoT, DoH (HTTP/1.1, HTTP/2 and HTTP/3), DoQ.
//   - MaxQueriesPerConn: connections opened afterwards (a connection
//     announces its cap when it opens: HTTP/2 SETTINGS, QUIC transport
//     parameters); TCP, DoT, DoH over our HTTP/2 and HTTP/3, DoQ.
//   - IdleTimeout and ReadTimeout: the next read of every TCP, DoT and
//     our HTTP/2 connection; DoQ streams accepted afterwards
//     (ReadTimeout); QUIC connections opened afterwards (IdleTimeout, the
//     QUIC idle timeout of DoQ and HTTP/3).
//
// net/http's servers (DoH over HTTP/1.1, and h2c) and quic-go's HTTP/3
// server keep the IdleTimeout, ReadTimeout and (h2c) MaxQueriesPerConn
// they were opened with: they read their settings unsynchronized, so
// changing them would race.

// limiter is a counting semaphore whose capacity may change while it is
// in use. The fast paths are atomic operations; waiting and growing take
// a lock. Safe for concurrent use.
type limiter struct {
	held    atomic.Int64
	max     atomic.Int64
	waiters atomic.Int32

	mu   sync.Mutex
	wake chan struct{} // closed to wake the waiters; nil when none wait
}

func newLimiter(max int) *limiter {
	s := &limiter{}
	s.max.Store(int64(max))
	return s
}

// tryAcquire takes a slot, false when all max are held.
func (s *limiter) tryAcquire() bool {
	for {
		h := s.held.Load()
		if h >= s.max.Load() {
			return false
		}
		if s.held.CompareAndSwap(h, h+1) {
			return true
		}
	}
}

// acquire takes a slot, waiting for one until stop is closed; false then.
func (s *limiter) acquire(stop <-chan struct{}) bool {
	for {
		if s.tryAcquire() {
			return true
		}
		s.mu.Lock()
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		wake := s.wake
		s.waiters.Add(1)
		s.mu.Unlock()
		// A release between the try above and the count of waiters would
		// not have woken us: try again now that we are counted.
		if s.tryAcquire() {
			s.waiters.Add(-1)
			return true
		}
		select {
		case <-wake:
			s.waiters.Add(-1)
		case <-stop:
			s.waiters.Add(-1)
			return false
		}
	}
}

// release gives back a slot taken by tryAcquire or acquire.
func (s *limiter) release() {
	s.held.Add(-1)
	if s.waiters.Load() > 0 {
		s.wakeAll()
	}
}

// setMax changes the number of slots. Slots held beyond a lowered max
// stay held until released.
func (s *limiter) setMax(max int) {
	s.max.Store(int64(max))
	s.wakeAll()
}

func (s *limiter) wakeAll() {
	s.mu.Lock()
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
	s.mu.Unlock()
}

// quicLimits sets base up so that each QUIC connection takes the
// MaxQueriesPerConn and IdleTimeout of the limits current when it opens,
// and returns it.
func (c *core) quicLimits(base *quic.Config) *quic.Config {
	base.GetConfigForClient = func(*quic.ClientInfo) (*quic.Config, error) {
		q := base.Clone()
		q.GetConfigForClient = nil
		lim := c.limits()
		q.MaxIncomingStreams = int64(lim.MaxQueriesPerConn)
		q.MaxIdleTimeout = lim.IdleTimeout
		return q, nil
	}
	return base
}
