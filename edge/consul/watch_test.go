package consul

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name      string
		prev, got uint64
		want      uint64
	}{
		{"forward", 10, 12, 12},
		{"same", 10, 10, 10},
		{"backwards resets", 10, 5, 0},
		{"zero after reset becomes one", 0, 0, 1},
		{"zero after a higher index is a reset", 7, 0, 0},
		{"first", 0, 42, 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextIndex(tt.prev, tt.got); got != tt.want {
				t.Errorf("nextIndex(%d, %d) = %d, want %d", tt.prev, tt.got, got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 20; n++ {
		want := min(backoffBase<<(n-1), backoffMax)
		for range 50 {
			d := backoff(n, r)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want in [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

// scripted is a fetch function that answers from a script of
// (content, index) pairs, then churns: the same content with an index
// one higher each time. It records the index of every request.
type scripted struct {
	mu      sync.Mutex
	script  []step
	indexes []uint64
	last    uint64
}

type step struct {
	val   string
	index uint64
	err   error
}

func (s *scripted) fetch(ctx context.Context, index uint64) (string, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.indexes = append(s.indexes, index)
	if len(s.script) > 0 {
		st := s.script[0]
		s.script = s.script[1:]
		if st.err == nil {
			s.last = st.index
		}
		return st.val, st.index, st.err
	}
	s.last++
	return "same", s.last, nil
}

func (s *scripted) sent() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.indexes...)
}

// drive advances fc by step n times, each time once the watch sleeps.
func drive(t *testing.T, fc *clockwork.FakeClock, sleepers, n int, step time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range n {
		if err := fc.BlockUntilContext(ctx, sleepers); err != nil {
			t.Fatalf("the watch never slept: %v", err)
		}
		fc.Advance(step)
	}
}

// TestWatchIndexRules: an index that goes backwards resets to 0 (one
// request at once), a 0 from the server is taken as 1, and a moving index
// with the same content swaps nothing; the bucket bounds the requests.
func TestWatchIndexRules(t *testing.T) {
	s := &scripted{script: []step{{"a", 100, nil}, {"a", 50, nil}, {"a", 0, nil}, {"a", 101, nil}}, last: 101}
	fc := clockwork.NewFakeClock()
	w := newWatch(s.fetch, func(a, b string) bool { return a == b }, fc)
	w.start()
	defer w.stop()
	drive(t, fc, 1, 100, 100*time.Millisecond) // 10 s of fake time
	got := s.sent()
	want := []uint64{0, 100, 0, 1, 101}
	for i, idx := range want {
		if got[i] != idx {
			t.Fatalf("request indexes %v, want to start %v", got[:len(want)], want)
		}
	}
	// Never blocked on 0 except for the first read and the reset.
	zeros := 0
	for _, idx := range got {
		if idx == 0 {
			zeros++
		}
	}
	if zeros != 2 {
		t.Errorf("%d requests with index 0, want 2 (first read and reset): %v", zeros, got)
	}
	if sw := w.swaps.Load(); sw != 2 {
		t.Errorf("%d swaps, want 2 (a, then the churn's \"same\")", sw)
	}
	// 10 s at 10 per second plus the burst of 2, and one in flight.
	if n := len(got); n > 103 || n < 90 {
		t.Errorf("%d requests in 10 s of churn, want about 100 and at most 103", n)
	}
	if v, _, ok := w.get(); !ok || v != "same" {
		t.Errorf("view %q %v", v, ok)
	}
}

// TestWatchBackoff: errors back off doubling to 5 s, and the last good
// view stays, aging, until Consul answers again.
func TestWatchBackoff(t *testing.T) {
	boom := errors.New("connection refused")
	var script []step
	script = append(script, step{"v1", 5, nil})
	for range 8 {
		script = append(script, step{err: boom})
	}
	s := &scripted{script: script, last: 5}
	fc := clockwork.NewFakeClock()
	w := newWatch(s.fetch, func(a, b string) bool { return a == b }, fc)
	w.start()
	defer w.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !w.waitReady(ctx, time.Hour) {
		t.Fatal("no first view")
	}
	// Eight errors: waits of at most 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5 s.
	var total time.Duration
	for len(s.sent()) < 10 {
		if err := fc.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		fc.Advance(50 * time.Millisecond)
		total += 50 * time.Millisecond
		if total > time.Minute {
			t.Fatalf("still %d requests after %s", len(s.sent()), total)
		}
	}
	if max := 100*time.Millisecond*(1+2+4+8+16+32) + 10*time.Second + time.Second; total > max {
		t.Errorf("recovery took %s of backoff, want at most %s", total, max)
	}
	if total < 7*time.Second {
		t.Errorf("recovery took %s: backoff did not grow", total)
	}
	if v, _, ok := w.get(); !ok || v != "v1" && v != "same" {
		t.Errorf("view %q %v", v, ok)
	}
	if w.errors.Load() != 8 {
		t.Errorf("%d errors counted, want 8", w.errors.Load())
	}
}

// TestWatchHeldIsCurrent: while the agent holds a blocking query open the
// view is current (age 0); once the query has been held longer than
// Consul ever holds one, the agent is taken for hung and the view ages.
func TestWatchHeldIsCurrent(t *testing.T) {
	release := make(chan struct{})
	fetch := func(ctx context.Context, index uint64) (string, uint64, error) {
		if index == 0 {
			return "v", 10, nil
		}
		select {
		case <-release:
			return "v", 10, nil
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
	}
	fc := clockwork.NewFakeClock()
	w := newWatch(fetch, func(a, b string) bool { return a == b }, fc)
	w.start()
	defer func() { close(release); w.stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !w.waitReady(ctx, time.Hour) {
		t.Fatal("no first view")
	}
	// Wait until the blocking query is open.
	for w.blocking.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatal("no blocking query")
		}
		time.Sleep(time.Millisecond)
	}
	fc.Advance(BlockWait)
	if _, age, _ := w.get(); age != 0 {
		t.Errorf("age %s while the query is held, want 0", age)
	}
	fc.Advance(heldMax)
	if _, age, _ := w.get(); age < heldMax {
		t.Errorf("age %s after the query was held %s, want the time since the last answer", age, BlockWait+heldMax)
	}
}
