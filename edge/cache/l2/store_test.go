package l2

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/cache/l2/redistest"
)

func newTestStore(t *testing.T, rs *redistest.Server, mod func(*Config)) *Store {
	t.Helper()
	cfg := Config{
		Addr: rs.Addr(), Username: redistest.User, Password: redistest.Password,
		Budget: 200 * time.Millisecond, MinBudget: 200 * time.Millisecond, Timeout: 2 * time.Second,
		Key: fleetKey, Namespace: "test", WriteQueue: 16,
		BreakerFailures: 2, BreakerCooldown: time.Hour, BreakerMaxCooldown: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond for a real server's state, within a bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storeGoroutines counts the goroutines running the store's code.
func storeGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "cache/l2.(*Store)") {
			n++
		}
	}
	return n
}

// TestStoreRoundTrip writes a value through the queue, reads it back,
// checks its expiry in Redis, and that Close leaves no goroutine behind.
func TestStoreRoundTrip(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	s := newTestStore(t, rs, nil)
	msg, q := packed(t)
	key := string(AppendKey(nil, s.KeyPrefix(), "tenant", q))
	v := Value{Msg: msg, Stored: time.Now().UnixNano(), TTL: 300, Stale: 60}
	s.Put(key, v, 360*time.Second)
	waitFor(t, "the write", func() bool { return s.written.Load() == 1 })
	r := <-s.Lookup(q, []string{key, key + "-absent"})
	if r.Err != nil || len(r.Values) != 2 || string(r.Values[0].Msg) != string(msg) || r.Values[0].TTL != 300 || r.Values[1].Msg != nil {
		t.Fatalf("Lookup = %+v", r)
	}
	c := rs.Client()
	defer c.Close()
	ttl, err := c.TTL(context.Background(), key).Result()
	if err != nil || ttl <= 350*time.Second || ttl > 360*time.Second {
		t.Errorf("EX in Redis %s, %v; want 360s", ttl, err)
	}
	if s.lookupErrors.Load() != 0 || s.br.state.Load() != stateClosed {
		t.Errorf("%d lookup errors, breaker %d", s.lookupErrors.Load(), s.br.state.Load())
	}
	s.Close()
	waitFor(t, "the store's goroutines to end", func() bool { return storeGoroutines() == 0 })
	if r := <-s.Lookup(q, []string{key}); r.Err != ErrClosed {
		t.Errorf("Lookup after Close: %v, want ErrClosed", r.Err)
	}
}

// TestStoreRejects puts bad values straight into Redis: each is dropped
// from the lookup's result and counted by reason.
func TestStoreRejects(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	s := newTestStore(t, rs, nil)
	msg, q := packed(t)
	c := rs.Client()
	defer c.Close()
	ctx := context.Background()
	k := func(name string) string { return string(AppendKey(nil, s.KeyPrefix(), name, q)) }
	good := s.sealer.Seal(k("good"), Value{Msg: msg, TTL: 60})
	tampered := append([]byte(nil), good...)
	tampered[14] ^= 1
	otherQ := append([]byte(nil), q...)
	otherQ[len(otherQ)-3] = 28
	for key, val := range map[string][]byte{
		k("good"):     good,
		k("tampered"): tampered,
		k("moved"):    good, // a valid value under another key
		k("garbage"):  []byte("not a value"),
		k("foreign"):  NewSealer([]byte("another fleet's key, 32 bytes ok")).Seal(k("foreign"), Value{Msg: msg, TTL: 60}),
	} {
		if err := c.Set(ctx, key, val, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{k("good"), k("tampered"), k("moved"), k("garbage"), k("foreign")}
	r := <-s.Lookup(q, keys)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	for i, v := range r.Values {
		if (v.Msg != nil) != (i == 0) {
			t.Errorf("%q: accepted %v", keys[i], v.Msg != nil)
		}
	}
	if s.rejectMAC.Load() != 3 || s.rejectOther.Load() != 1 {
		t.Errorf("rejected: %d mac, %d format; want 3 and 1", s.rejectMAC.Load(), s.rejectOther.Load())
	}
	// The same good value read for another question.
	r = <-s.Lookup(otherQ, []string{k("good")})
	if r.Values[0].Msg != nil || s.rejectQuestion.Load() != 1 {
		t.Errorf("a value for another question: accepted %v, %d rejected", r.Values[0].Msg != nil, s.rejectQuestion.Load())
	}
}

// TestStoreHungRedis stops Redis: lookups still running at the end of
// the budget open the breaker at that moment, writes are dropped and
// counted (queue full while the writer waits, breaker open after), and
// a probe after the cooldown closes the breaker once Redis answers.
func TestStoreHungRedis(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	now := &fakeNow{t: time.Unix(1000, 0)}
	s := newTestStore(t, rs, func(c *Config) {
		c.Budget, c.MinBudget, c.WriteQueue, c.Now = 20*time.Millisecond, 20*time.Millisecond, 2, now.now
	})
	msg, q := packed(t)
	waitFor(t, "the first connection", func() bool { return s.rdb.PoolStats().TotalConns >= 1 })
	rs.Stop()
	defer rs.Resume()
	for range 2 {
		s.Lookup(q, []string{"k"})
	}
	waitFor(t, "the breaker to open", func() bool { return s.br.state.Load() == stateOpen })
	if s.slow.Load() != 2 {
		t.Errorf("%d lookups past the budget, want 2", s.slow.Load())
	}
	if _, ok := s.Budget(); ok {
		t.Error("an open breaker let a lookup through")
	}
	s.Put("k", Value{Msg: msg, TTL: 60}, time.Minute)
	if s.dropOpen.Load() != 1 {
		t.Errorf("%d writes dropped with the breaker open, want 1", s.dropOpen.Load())
	}
	rs.Resume()
	now.advance(time.Hour)
	if _, ok := s.Budget(); ok {
		t.Error("the lookup that starts the probe asked Redis")
	}
	waitFor(t, "the probe to close the breaker", func() bool { return s.br.state.Load() == stateClosed })
	if _, ok := s.Budget(); !ok {
		t.Error("Redis skipped with the breaker closed")
	}
}

// TestStoreQueueFull fills the write queue while Redis is stopped.
func TestStoreQueueFull(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	s := newTestStore(t, rs, func(c *Config) { c.WriteQueue = 2 })
	msg, _ := packed(t)
	rs.Stop()
	defer rs.Resume()
	const n = 20
	for i := range n {
		s.Put("k"+string(rune('a'+i)), Value{Msg: msg, TTL: 60}, time.Minute)
	}
	// The writer holds one batch (what it found queued: at most 3) while
	// it waits on Redis; the queue two more.
	if d := s.dropFull.Load(); d < n-5 {
		t.Errorf("%d writes dropped of %d with a queue of 2, want most", d, n)
	}
}
