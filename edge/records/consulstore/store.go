package consulstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jonboulle/clockwork"

	"github.com/dnsedge/dnsedge/edge/consul"
	"github.com/dnsedge/dnsedge/edge/records"
)

// DefaultTimeout bounds each read and write of the store: a PATCH gets
// its 503 within it when the agent does not answer.
const DefaultTimeout = 5 * time.Second

// Store keeps API zones in Consul KV under a prefix, one key per zone
// (Key) holding the zone as a whole (Encode). Commit writes the zone after
// the change with a check-and-set on the ModifyIndex of the version the
// change was made on, so that of two instances changing the same zone
// from the same version one wins and the other gets records.ErrStale
// (412); the write is accepted by Consul before Commit returns. When the
// agent cannot be reached Commit returns records.ErrUnavailable (503) and
// nothing changes; what the Manager keeps goes on being answered.
//
// Follow starts a blocking-query watch of the prefix that hands every
// zone another instance changed to the Manager (records.Manager.Replace).
// Safe for concurrent use.
type Store struct {
	kv      *api.KV
	txn     *api.Txn
	client  *api.Client
	prefix  string
	log     *slog.Logger
	timeout time.Duration
	clock   clockwork.Clock

	mu    sync.Mutex
	known map[string]kvState
	watch *consul.PrefixWatch

	// seen is the ModifyIndex of each key the watch last handed on;
	// only the watch's callback, whose calls never overlap, uses it.
	seen map[string]uint64

	// bad counts values under the prefix that could not be read.
	bad atomic.Uint64
}

// kvState is what the store last knew of a zone's key: the Seq of the
// zone it holds and its ModifyIndex, or that the key is absent (index 0:
// a check-and-set that creates it).
type kvState struct {
	seq    uint64
	index  uint64
	absent bool
}

var _ records.Store = (*Store)(nil)

// Options are what a Store needs besides its client and prefix.
type Options struct {
	Log *slog.Logger
	// Timeout bounds each request; 0 is DefaultTimeout.
	Timeout time.Duration
	// Clock drives the watch's rate limit and backoff; nil is real.
	Clock clockwork.Clock
}

// New returns a store of the zones under prefix (ending in "/") through
// client. It reads nothing until Load.
func New(client *api.Client, prefix string, o Options) *Store {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return &Store{
		kv: client.KV(), txn: client.Txn(), client: client, prefix: prefix,
		log: o.Log, timeout: o.Timeout, clock: o.Clock, known: make(map[string]kvState), seen: make(map[string]uint64),
	}
}

func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", records.ErrUnavailable, what, err)
}

// Load reads the zone's key with a consistent read: the zero Snapshot
// for a zone never changed, else the zone it holds. It returns no
// entries: the key holds the zone whole.
func (s *Store) Load(origin string) (records.Snapshot, []records.Entry, error) {
	key := Key(s.prefix, origin)
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	p, _, err := s.kv.Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return records.Snapshot{}, nil, unavailable("read consul key "+key, err)
	}
	if p == nil {
		s.mu.Lock()
		s.known[origin] = kvState{absent: true}
		s.mu.Unlock()
		return records.Snapshot{}, nil, nil
	}
	snap, err := Decode(origin, p.Value)
	if err != nil {
		return records.Snapshot{}, nil, fmt.Errorf("consul key %s: %w", key, err)
	}
	s.mu.Lock()
	s.known[origin] = kvState{seq: snap.Seq, index: p.ModifyIndex}
	s.mu.Unlock()
	return snap, nil, nil
}

// Commit writes the zone after e with a check-and-set; see Store.
func (s *Store) Commit(origin string, e records.Entry, after func() records.Snapshot) error {
	key := Key(s.prefix, origin)
	s.mu.Lock()
	k, ok := s.known[origin]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("records store: zone %s not loaded", origin)
	}
	if !k.absent && k.seq != e.Seq-1 {
		// Another instance committed a change the Manager has not
		// taken yet: the watch brings it.
		return fmt.Errorf("%w: another instance changed zone %s (change %d) first", records.ErrStale, origin, k.seq)
	}
	val, err := Encode(after(), &e)
	if err != nil {
		return err
	}
	ops := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: val, Index: k.index}}}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	okTxn, resp, _, err := s.txn.Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return unavailable("write consul key "+key, err)
	}
	if !okTxn {
		var what string
		for _, te := range resp.Errors {
			what = te.What
		}
		s.refresh(origin, key)
		return fmt.Errorf("%w: another instance changed zone %s first (%s)", records.ErrStale, origin, what)
	}
	index := uint64(0)
	for _, r := range resp.Results {
		if r.KV != nil {
			index = r.KV.ModifyIndex
		}
	}
	s.mu.Lock()
	if cur := s.known[origin]; cur.absent || cur.index < index {
		s.known[origin] = kvState{seq: e.Seq, index: index}
	}
	s.mu.Unlock()
	return nil
}

// refresh reads the zone's key after a failed check-and-set, so that a
// key deleted or rewritten behind the watch does not make every later
// change fail; the Manager takes the zone from the watch.
func (s *Store) refresh(origin, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	p, _, err := s.kv.Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == nil {
		s.known[origin] = kvState{absent: true}
		return
	}
	if snap, err := Decode(origin, p.Value); err == nil {
		s.known[origin] = kvState{seq: snap.Seq, index: p.ModifyIndex}
	}
}

// Follow starts the watch of the prefix: every zone m keeps that another
// instance changed is handed to m.Replace. It waits up to wait for the
// first read. Calling it again does nothing.
func (s *Store) Follow(m *records.Manager, wait time.Duration) {
	s.mu.Lock()
	if s.watch != nil {
		s.mu.Unlock()
		return
	}
	s.watch = consul.WatchPrefix(s.client, s.prefix, func(pairs []consul.KVPair) { s.changed(m, pairs) }, s.clock)
	w := s.watch
	s.mu.Unlock()
	w.WaitReady(context.Background(), wait)
}

// changed takes what the watch read under the prefix.
func (s *Store) changed(m *records.Manager, pairs []consul.KVPair) {
	for _, p := range pairs {
		origin, ok := OriginOf(s.prefix, p.Key)
		if !ok {
			continue
		}
		s.mu.Lock()
		_, tracked := s.known[origin]
		s.mu.Unlock()
		if !tracked || s.seen[p.Key] == p.ModifyIndex {
			continue // a zone not kept here, or handed on already
		}
		s.seen[p.Key] = p.ModifyIndex
		// Every kept zone is handed on, even at an index the store
		// knows (its own commit, or one read by refresh): Replace
		// takes only a zone newer than the Manager's.
		snap, err := Decode(origin, p.Value)
		if err != nil {
			s.bad.Add(1)
			s.log.Error("records: zone in consul not readable; the zone as kept stays", "key", p.Key, "error", err.Error())
			continue
		}
		s.mu.Lock()
		if cur := s.known[origin]; cur.absent || p.ModifyIndex > cur.index {
			s.known[origin] = kvState{seq: snap.Seq, index: p.ModifyIndex}
		}
		s.mu.Unlock()
		if err := m.Replace(snap); err != nil && !errors.Is(err, records.ErrNoZone) {
			s.bad.Add(1)
			s.log.Error("records: zone from consul refused; the zone as kept stays", "key", p.Key, "error", err.Error())
		}
	}
}

// Unreadable returns how many values under the prefix could not be read
// or were refused.
func (s *Store) Unreadable() uint64 { return s.bad.Load() }

// Close stops the watch.
func (s *Store) Close() error {
	s.mu.Lock()
	w := s.watch
	s.watch = nil
	s.mu.Unlock()
	if w != nil {
		return w.Close()
	}
	return nil
}
