package edgetls

import (
	"crypto/rand"
	"crypto/tls"
	"sync"
	"time"
)

// Lifetimes of session ticket keys, those crypto/tls uses for the keys it
// manages itself: a new key every day, each accepted for a week.
const (
	TicketKeyRotation = 24 * time.Hour
	TicketKeyLifetime = 7 * 24 * time.Hour
)

// A TicketKey is one session ticket key with its age: how long before
// the moment it was read it was made.
type TicketKey struct {
	Key [32]byte
	Age time.Duration
}

// TicketKeys are the session ticket keys of a server's TLS listeners,
// held by the server rather than by each listener's tls.Config, so that
// every listener (DoT, DoH, DoQ, HTTP/3) shares them and another process
// that takes them over (see Restore) resumes the sessions this one
// issued. The newest key encrypts tickets; a key is made every
// TicketKeyRotation and accepted for TicketKeyLifetime, as crypto/tls
// does with its own keys. Safe for concurrent use.
type TicketKeys struct {
	now func() time.Time

	mu    sync.Mutex
	keys  []ticketKey // newest first
	codec *tls.Config // holds keys for EncryptTicket and DecryptTicket
}

type ticketKey struct {
	key  [32]byte
	made time.Time
}

// NewTicketKeys returns a set holding one new key. now is the clock;
// time.Now when nil.
func NewTicketKeys(now func() time.Time) *TicketKeys {
	if now == nil {
		now = time.Now
	}
	t := &TicketKeys{now: now, codec: &tls.Config{}}
	t.mu.Lock()
	t.rotateLocked(now())
	t.mu.Unlock()
	return t
}

// Apply makes c encrypt and decrypt its session tickets with t (through
// WrapSession and UnwrapSession, which clones of c keep). It replaces
// any WrapSession and UnwrapSession c had.
func (t *TicketKeys) Apply(c *tls.Config) {
	c.WrapSession = t.wrap
	c.UnwrapSession = t.unwrap
}

func (t *TicketKeys) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	return t.current().EncryptTicket(cs, ss)
}

// unwrap decrypts a ticket; one no key opens gives (nil, nil), a full
// handshake.
func (t *TicketKeys) unwrap(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	return t.current().DecryptTicket(identity, cs)
}

// current returns the codec after rotating the keys when due.
func (t *TicketKeys) current() *tls.Config {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.keys) == 0 || now.Sub(t.keys[0].made) >= TicketKeyRotation {
		t.rotateLocked(now)
	} else if now.Sub(t.keys[len(t.keys)-1].made) >= TicketKeyLifetime {
		t.installLocked(now)
	}
	return t.codec
}

// rotateLocked makes a new key the newest one and drops expired ones.
func (t *TicketKeys) rotateLocked(now time.Time) {
	var k ticketKey
	rand.Read(k.key[:])
	k.made = now
	t.keys = append([]ticketKey{k}, t.keys...)
	t.installLocked(now)
}

// installLocked drops expired keys and gives the rest to a new codec:
// a config's keys are not changed under handshakes that use it.
func (t *TicketKeys) installLocked(now time.Time) {
	keep := t.keys[:0]
	for _, k := range t.keys {
		if now.Sub(k.made) < TicketKeyLifetime {
			keep = append(keep, k)
		}
	}
	t.keys = keep
	raw := make([][32]byte, len(t.keys))
	for i, k := range t.keys {
		raw[i] = k.key
	}
	codec := &tls.Config{}
	if len(raw) > 0 {
		codec.SetSessionTicketKeys(raw)
	}
	t.codec = codec
}

// Keys returns the keys in force, newest first.
func (t *TicketKeys) Keys() []TicketKey {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TicketKey, 0, len(t.keys))
	for _, k := range t.keys {
		out = append(out, TicketKey{Key: k.key, Age: max(now.Sub(k.made), 0)})
	}
	return out
}

// Restore replaces the keys with keys (newest first, as Keys returns
// them), read elapsed before now: each is that much older. Expired keys
// are dropped; when none is left the set keeps its own keys. It returns
// how many keys it took.
func (t *TicketKeys) Restore(keys []TicketKey, elapsed time.Duration) int {
	now := t.now()
	var ks []ticketKey
	for _, k := range keys {
		age, el := max(k.Age, 0), max(elapsed, 0)
		if age < TicketKeyLifetime && el < TicketKeyLifetime-age {
			ks = append(ks, ticketKey{key: k.Key, made: now.Add(-age - el)})
		}
	}
	if len(ks) == 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keys = ks
	if now.Sub(ks[0].made) >= TicketKeyRotation {
		t.rotateLocked(now)
	} else {
		t.installLocked(now)
	}
	return len(ks)
}
