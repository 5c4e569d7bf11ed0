package dnssec

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

func validateA(t *testing.T, v *Validator, w *world, name string) Result {
	t.Helper()
	return v.Validate(context.Background(), dns.Question{Name: name, Qtype: dns.TypeA, Qclass: dns.ClassINET}, w.query(name, dns.TypeA))
}

func TestKeyCacheSingleFlight(t *testing.T) {
	t.Parallel()
	w := testWorld(t)
	w.gate = make(chan struct{})
	v, err := New(Config{Anchors: w.rootAnchor(), Clock: clockwork.NewFakeClockAt(testNow)}, w)
	if err != nil {
		t.Fatal(err)
	}
	const n = 32
	var started, done sync.WaitGroup
	results := make([]Result, n)
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			resp := w.query("www.ok.", dns.TypeA)
			started.Done()
			results[i] = v.Validate(context.Background(), dns.Question{Name: "www.ok.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, resp)
		}()
	}
	started.Wait()
	close(w.gate)
	done.Wait()
	for i, r := range results {
		if r.Verdict != Secure {
			t.Fatalf("validation %d: %+v", i, r)
		}
	}
	for _, q := range []string{"./DNSKEY", "ok./DS", "ok./DNSKEY"} {
		if got := w.count(q); got != 1 {
			t.Errorf("%s fetched %d times, want 1", q, got)
		}
	}
	before := w.fetches.Load()
	if r := validateA(t, v, w, "www.ok."); r.Verdict != Secure {
		t.Fatalf("warm validation: %+v", r)
	}
	if got := w.fetches.Load() - before; got != 0 {
		t.Errorf("warm validation fetched %d times, want 0", got)
	}
}

func TestKeyCacheExpiry(t *testing.T) {
	t.Parallel()
	w := testWorld(t)
	clock := clockwork.NewFakeClockAt(testNow)
	v, err := New(Config{Anchors: w.rootAnchor(), Clock: clock}, w)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		fetches int // of ok./DNSKEY so far
	}{
		{0, 1},
		{time.Hour - time.Second, 1},
		{time.Second, 2}, // DNSKEY, DS and RRSIG TTLs are 3600 s
		{time.Minute, 2},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		if r := validateA(t, v, w, "www.ok."); r.Verdict != Secure {
			t.Fatalf("step %d: %+v", i, r)
		}
		if got := w.count("ok./DNSKEY"); got != s.fetches {
			t.Errorf("step %d: ok. DNSKEY fetched %d times, want %d", i, got, s.fetches)
		}
	}
}

func TestKeyCacheBound(t *testing.T) {
	t.Parallel()
	w := testWorld(t)
	v, err := New(Config{Anchors: w.rootAnchor(), Clock: clockwork.NewFakeClockAt(testNow), KeyCacheSize: 2}, w)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"www.ok.", "www.rsa.", "www.n3.", "www.p384."} {
		if r := validateA(t, v, w, name); r.Verdict != Secure {
			t.Fatalf("%s: %+v", name, r)
		}
		if n := v.cache.len(); n > 2 {
			t.Fatalf("cache holds %d zones, bound is 2", n)
		}
	}
}

// failingFetcher fails for one query until told otherwise.
type failingFetcher struct {
	w    *world
	mu   sync.Mutex
	fail string
}

func (f *failingFetcher) Fetch(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	f.mu.Lock()
	fail := f.fail == canonical(name)+"/"+dns.TypeToString[qtype]
	f.mu.Unlock()
	if fail {
		return nil, errors.New("upstream timed out")
	}
	return f.w.Fetch(ctx, name, qtype)
}

func TestFetchFailureIsNotCached(t *testing.T) {
	t.Parallel()
	w := testWorld(t)
	f := &failingFetcher{w: w, fail: "ok./DNSKEY"}
	v, err := New(Config{Anchors: w.rootAnchor(), Clock: clockwork.NewFakeClockAt(testNow)}, f)
	if err != nil {
		t.Fatal(err)
	}
	if r := validateA(t, v, w, "www.ok."); r.Verdict != Indeterminate || r.Reason == "" {
		t.Fatalf("with a failing fetch: %+v", r)
	}
	f.mu.Lock()
	f.fail = ""
	f.mu.Unlock()
	if r := validateA(t, v, w, "www.ok."); r.Verdict != Secure {
		t.Fatalf("after the fetch recovers: %+v", r)
	}
}

func TestBogusKeysAreCachedBriefly(t *testing.T) {
	t.Parallel()
	w := testWorld(t)
	clock := clockwork.NewFakeClockAt(testNow)
	v, err := New(Config{Anchors: w.rootAnchor(), Clock: clock}, w)
	if err != nil {
		t.Fatal(err)
	}
	for i, adv := range []time.Duration{0, bogusKeyTTL - time.Second, time.Second} {
		clock.Advance(adv)
		if r := validateA(t, v, w, "www.mismatch."); r.Verdict != Bogus {
			t.Fatalf("step %d: %+v", i, r)
		}
		want := 1
		if i == 2 {
			want = 2
		}
		if got := w.count("mismatch./DNSKEY"); got != want {
			t.Errorf("step %d: DNSKEY fetched %d times, want %d", i, got, want)
		}
	}
}
