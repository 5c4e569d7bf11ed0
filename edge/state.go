package edge

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/listen"
	edgetls "github.com/dnsedge/dnsedge/tls"
	"github.com/dnsedge/dnsedge/transport"
)

// The state a running server hands to the process that replaces it in a
// binary upgrade: what it has learnt of its upstream paths, its most
// valuable cache entries, the session ticket keys of its TLS listeners
// and the keys of its QUIC transports. The format is in state_format.go.

// DefaultStateEntries is the number of cache entries WriteState writes
// when StateOptions.MaxEntries is 0: about 130 MB of state for typical
// answers (a CNAME and an A record), which take about 1.5 s of CPU time
// to write and 2 s to read (BenchmarkState1M).
const DefaultStateEntries = 1 << 20

// StateOptions bound what WriteState writes.
type StateOptions struct {
	// MaxEntries bounds the cache entries written, the most valuable
	// first (most recently used); 0 means DefaultStateEntries, a
	// negative value none.
	MaxEntries int
}

// ErrStateVersion is returned (wrapped) by ReadState for a state written
// in another format version.
var ErrStateVersion = errors.New("state written in another format version")

// WriteState writes the server's state to w: the health of every path
// (breaker state and timers as durations, so they mean the same on the
// reader's clock), up to o.MaxEntries cache entries with the time they
// have been cached, the TLS session ticket keys and the QUIC stateless
// reset and token keys.
//
// The stream holds secrets (the ticket and QUIC keys): it must only go
// to the process that replaces this one, over a channel nobody else can
// read. Safe to call while the server serves; entries cached while it
// writes may or may not be in it.
func (s *Server) WriteState(w io.Writer, o StateOptions) error {
	max := o.MaxEntries
	if max == 0 {
		max = DefaultStateEntries
	}
	gen := s.gen.Load()
	st := &serverState{
		written: s.now(),
		health:  s.health.States(),
		tickets: s.tickets.Keys(),
		quic:    s.quicKeys,
	}
	if gen.cache != nil {
		st.cacheOn = true
		st.trust = trustKey(gen.cfg.DNSSEC)
		st.records = gen.cache.Records(max)
	}
	if err := st.write(w); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// ReadState reads a state WriteState wrote and takes it over: path
// health for the paths of this server's configuration that the state
// knows (a path it does not know starts fresh, one the configuration no
// longer has is skipped), the cache entries that have not expired since
// (clamped to this configuration's cache; none when the cache is off or
// DNSSEC validation differs), the session ticket keys and the QUIC keys.
//
// It reads the whole stream and checks every section, its checksum and
// every value before it changes anything: a stream of another format
// version (ErrStateVersion), a corrupt or truncated one is refused with
// an error, and the server stays as New built it, cold. It reads nothing
// past the end of the state. It must be called after New and before
// Start.
func (s *Server) ReadState(r io.Reader) error {
	if s.started.Load() {
		return errors.New("read state: the server has started")
	}
	st, err := readState(r)
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	// Start and Reload hold reloadMu while they build listeners from the
	// keys and generations from the cache; Close sets closed under mu.
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started.Load() || s.closed {
		return errors.New("read state: the server has started or closed")
	}
	now := s.now()
	elapsed := max(now.Sub(st.written), 0)
	paths := 0
	for id, hs := range st.health {
		if s.health.Restore(id, hs, elapsed) {
			paths++
		}
	}
	entries := 0
	gen := s.gen.Load()
	switch {
	case len(st.records) == 0:
	case gen.cache == nil:
		s.log.Info("state: cache entries skipped: the cache is off")
	case !st.cacheOn || st.trust != trustKey(gen.cfg.DNSSEC):
		s.log.Info("state: cache entries skipped: DNSSEC validation differs")
	default:
		entries = gen.cache.Restore(st.records, elapsed)
	}
	keys := s.tickets.Restore(st.tickets, elapsed)
	if st.quic != nil {
		*s.quicKeys = *st.quic
	}
	s.log.Info("state taken over", "paths", paths, "of_paths", len(st.health),
		"cache_entries", entries, "of_entries", len(st.records),
		"ticket_keys", keys, "quic_keys", st.quic != nil, "age", elapsed.String())
	return nil
}

// newQUICKeys returns random QUIC keys.
func newQUICKeys() *listen.QUICKeys {
	k := new(listen.QUICKeys)
	rand.Read(k.Reset[:])
	rand.Read(k.Token[:])
	return k
}

// serverState is a state as read or to be written.
type serverState struct {
	written time.Time
	health  map[transport.PathID]transport.HealthState
	cacheOn bool
	trust   string // trustKey of the cache's configuration
	records []cache.Record
	tickets []edgetls.TicketKey
	quic    *listen.QUICKeys
}
