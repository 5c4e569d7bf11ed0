// Package l2 is the shared answer cache in Redis that backs the local
// cache of every dnsedge instance in a fleet: the key and value formats,
// the signed values, the breaker that skips a failing Redis, the budget
// a miss waits for it, and the queue that writes answers in the
// background. The race between Redis and the upstream is the cache's
// (edge/cache).
package l2

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Config configures a Store; see Spec for the meaning and defaults of
// its fields, which New does not fill in (Spec.Config does).
type Config struct {
	Addr, Username, Password string
	DB, PoolSize             int
	TLS                      *tls.Config

	Budget, MinBudget, Timeout time.Duration
	// Key is the fleet key values are signed with.
	Key        []byte
	Namespace  string
	WriteQueue int
	// Validation names the DNSSEC validation in force (see KeyPrefix);
	// "off" when empty.
	Validation string

	BreakerFailures                     int
	BreakerCooldown, BreakerMaxCooldown time.Duration

	// Now is the clock of the breaker; time.Now when nil.
	Now func() time.Time
	// Log receives the breaker's transitions; slog.Default when nil.
	Log *slog.Logger
}

// A Result is what a lookup found: one Value per key asked, with a nil
// Msg for a key that held nothing or a value that was rejected; or the
// error that ended the lookup.
type Result struct {
	Values []Value
	Err    error
}

// A write is one answer waiting in the queue.
type write struct {
	key string
	val []byte
	ex  time.Duration
}

// writeBatch bounds the writes sent in one pipeline.
const writeBatch = 64

// clientLog passes go-redis's own messages (a failed dial, say) to slog
// at debug level: the breaker and the metrics already tell of a Redis
// that is down, and the log stays JSON.
type clientLog struct{ log *slog.Logger }

func (l clientLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "l2: redis client: "+fmt.Sprintf(format, v...))
}

// setClientLog sets go-redis's logger, which is one for the whole
// process, once: to the logger of the first Store.
var setClientLog sync.Once

// ErrClosed is the error of a lookup made after Close.
var ErrClosed = errors.New("l2: closed")

// A Store is the shared cache: Lookup, Put and the breaker and budget
// that govern both. It is safe for concurrent use. Every goroutine it
// starts ends by Close.
type Store struct {
	rdb     *redis.Client
	sealer  *Sealer
	prefix  string
	timeout time.Duration
	budget  *budget
	br      *breaker
	log     *slog.Logger

	writes chan write

	base   context.Context
	stop   context.CancelFunc
	mu     sync.Mutex // orders starting a goroutine against Close
	closed bool
	wg     sync.WaitGroup

	lookups, lookupErrors, slow, skipped   atomic.Uint64
	written, writeErrors                   atomic.Uint64
	dropFull, dropOpen                     atomic.Uint64
	rejectMAC, rejectQuestion, rejectOther atomic.Uint64
}

// New returns a Store for cfg. It does not connect: the first command
// does, and a Redis that is down only opens the breaker.
func New(cfg Config) (*Store, error) {
	if cfg.Addr == "" {
		return nil, errors.New("l2: no Redis address")
	}
	if len(cfg.Key) < MinKeyLen {
		return nil, fmt.Errorf("l2: the fleet key has %d bytes, want at least %d", len(cfg.Key), MinKeyLen)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = 10 * runtime.GOMAXPROCS(0)
	}
	setClientLog.Do(func() { redis.SetLogger(clientLog{cfg.Log}) })
	s := &Store{
		rdb: redis.NewClient(&redis.Options{
			Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password, DB: cfg.DB,
			TLSConfig: cfg.TLS,
			// A retry would outlast the budget; the breaker and the
			// upstream cover a failed command.
			MaxRetries:  -1,
			DialTimeout: cfg.Timeout, ReadTimeout: cfg.Timeout, WriteTimeout: cfg.Timeout,
			ContextTimeoutEnabled: true,
			PoolSize:              cfg.PoolSize, PoolTimeout: cfg.Timeout,
			DialerRetries:   1,
			DisableIdentity: true,
			// Protocol 2: no push notifications to wait for; the values
			// are plain strings either way.
			Protocol:                 2,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		}),
		sealer:  NewSealer(cfg.Key),
		prefix:  KeyPrefix(cfg.Namespace, cmp.Or(cfg.Validation, "off")),
		timeout: cfg.Timeout,
		budget:  newBudget(cfg.Budget, cfg.MinBudget),
		br:      newBreaker(max(1, cfg.BreakerFailures), cfg.BreakerCooldown, cfg.BreakerMaxCooldown, cfg.Now),
		log:     cfg.Log,
		writes:  make(chan write, max(1, cfg.WriteQueue)),
	}
	s.base, s.stop = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.writer()
	// Connect ahead of the first miss (dial, TLS and AUTH cost more than
	// a budget); a Redis that is down is the breaker's business later.
	s.spawn(func() {
		ctx, cancel := context.WithTimeout(s.base, max(s.timeout, time.Second))
		defer cancel()
		if err := s.rdb.Ping(ctx).Err(); err != nil {
			s.log.Warn("l2: Redis does not answer yet", "addr", cfg.Addr, "err", err)
		}
	})
	return s, nil
}

// KeyPrefix returns what every key starts with (see KeyPrefix).
func (s *Store) KeyPrefix() string { return s.prefix }

// Budget returns how long a miss should wait for a lookup before asking
// the upstream, and false when Redis is to be skipped: the breaker is
// open. When the breaker's cooldown has passed it starts a background
// probe; the query that noticed still skips Redis.
func (s *Store) Budget() (time.Duration, bool) {
	ok, probe := s.br.allow()
	if probe {
		s.probe()
	}
	if !ok {
		s.skipped.Add(1)
		return 0, false
	}
	return s.budget.current(), true
}

// probe pings Redis in the background and tells the breaker the result.
func (s *Store) probe() {
	if !s.spawn(func() {
		ctx, cancel := context.WithTimeout(s.base, s.timeout)
		defer cancel()
		err := s.rdb.Ping(ctx).Err()
		s.br.probed(err == nil)
		if err == nil {
			s.log.Info("l2: Redis answers again; shared cache resumed")
		} else {
			s.log.Debug("l2: Redis probe failed", "err", err)
		}
	}) {
		s.br.probed(false)
	}
}

// spawn runs fn in a goroutine that Close waits for, unless the store is
// closed.
func (s *Store) spawn(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// Lookup starts reading keys, whose answers must have the question
// question (the lower-cased wire name, QTYPE and QCLASS), and returns at
// once the channel that will carry the Result. The lookup runs under the
// store's Timeout, not the caller's deadline: one that ends after the
// caller gave up still tells the breaker and the budget how Redis did.
// Values that fail their MAC or question check are dropped from the
// result and counted.
func (s *Store) Lookup(question []byte, keys []string) <-chan Result {
	out := make(chan Result, 1)
	budget := s.budget.current()
	if !s.spawn(func() { out <- s.lookup(question, keys, budget) }) {
		out <- Result{Err: ErrClosed}
	}
	return out
}

func (s *Store) lookup(question []byte, keys []string, budget time.Duration) Result {
	s.lookups.Add(1)
	ctx, cancel := context.WithTimeout(s.base, s.timeout)
	defer cancel()
	// A lookup still running when the budget ends counts against the
	// breaker at that moment, not when it times out: a hung Redis opens
	// the breaker after Failures queries, each of which waited only the
	// budget.
	late := time.AfterFunc(budget, func() {
		s.slow.Add(1)
		s.br.failure()
	})
	start := time.Now()
	raw := make([]any, len(keys))
	var err error
	if len(keys) == 1 {
		var v string
		v, err = s.rdb.Get(ctx, keys[0]).Result()
		if err == nil {
			raw[0] = v
		} else if errors.Is(err, redis.Nil) {
			err = nil
		}
	} else {
		raw, err = s.rdb.MGet(ctx, keys...).Result()
	}
	inTime := late.Stop()
	if s.base.Err() != nil {
		return Result{Err: ErrClosed}
	}
	s.budget.observe(time.Since(start))
	if err != nil {
		s.lookupErrors.Add(1)
		if inTime {
			s.br.failure()
		}
		return Result{Err: fmt.Errorf("l2: read %d keys: %w", len(keys), err)}
	}
	if inTime {
		s.br.success()
	}
	vals := make([]Value, len(keys))
	for i, r := range raw {
		b, ok := r.(string)
		if !ok || i >= len(keys) {
			continue
		}
		v, err := s.sealer.Open(keys[i], question, []byte(b))
		if err != nil {
			s.reject(err)
			s.log.Debug("l2: value rejected", "err", err)
			continue
		}
		vals[i] = v
	}
	return Result{Values: vals}
}

func (s *Store) reject(err error) {
	switch reason(err) {
	case "mac":
		s.rejectMAC.Add(1)
	case "question":
		s.rejectQuestion.Add(1)
	default:
		s.rejectOther.Add(1)
	}
}

// Put queues v to be written under key with expiry ex, without waiting.
// The write is dropped, and counted, when the breaker is open or the
// queue is full.
func (s *Store) Put(key string, v Value, ex time.Duration) {
	if s.br.state.Load() != stateClosed {
		s.dropOpen.Add(1)
		return
	}
	b := s.sealer.Seal(key, v)
	if b == nil || ex < time.Second {
		return
	}
	select {
	case s.writes <- write{key: key, val: b, ex: ex}:
	default:
		s.dropFull.Add(1)
	}
}

// writer sends queued writes, up to writeBatch in one pipeline, until
// Close.
func (s *Store) writer() {
	defer s.wg.Done()
	batch := make([]write, 0, writeBatch)
	for {
		select {
		case <-s.base.Done():
			return
		case w := <-s.writes:
			batch = append(batch[:0], w)
		}
	more:
		for len(batch) < writeBatch {
			select {
			case w := <-s.writes:
				batch = append(batch, w)
			default:
				break more
			}
		}
		if s.br.state.Load() != stateClosed {
			s.dropOpen.Add(uint64(len(batch)))
			continue
		}
		ctx, cancel := context.WithTimeout(s.base, s.timeout)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, w := range batch {
				p.Set(ctx, w.key, w.val, w.ex)
			}
			return nil
		})
		cancel()
		if s.base.Err() != nil {
			return
		}
		if err != nil {
			s.writeErrors.Add(uint64(len(batch)))
			s.br.failure()
			s.log.Debug("l2: write failed", "writes", len(batch), "err", err)
			continue
		}
		s.written.Add(uint64(len(batch)))
	}
}

// Close stops the writer (queued writes are dropped), waits for the
// lookups and probes in flight and closes the connections.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
	return s.rdb.Close()
}
