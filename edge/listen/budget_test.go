package listen

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestBudget checks that a budget behaves as context.WithDeadline does,
// whether or not its Done channel was asked for before it ended.
func TestBudget(t *testing.T) {
	t.Parallel()
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	tests := []struct {
		name    string
		timeout time.Duration
		early   bool // ask for Done before the end
		end     bool
		want    error
	}{
		{"running", time.Hour, false, false, nil},
		{"running, Done asked", time.Hour, true, false, nil},
		{"ended", time.Hour, false, true, context.Canceled},
		{"ended, Done asked", time.Hour, true, true, context.Canceled},
		{"past deadline", -time.Second, false, false, context.DeadlineExceeded},
		{"past deadline, Done asked", -time.Second, true, false, context.DeadlineExceeded},
		{"past deadline, then ended", -time.Second, false, true, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dl := time.Now().Add(tt.timeout)
			b := newBudget(dl, waitHook{})
			if d, ok := b.Deadline(); !ok || !d.Equal(dl) {
				t.Errorf("Deadline = %v, %v", d, ok)
			}
			var early <-chan struct{}
			if tt.early {
				early = b.Done()
			}
			if tt.want == context.DeadlineExceeded && !tt.early {
				// The deadline passed before anyone asked: Err knows it.
				if err := b.Err(); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Err before Done = %v", err)
				}
			}
			if tt.end {
				b.end()
				b.end()
			}
			if tt.want == context.DeadlineExceeded && tt.early {
				<-early
			}
			if err := b.Err(); err != tt.want {
				t.Errorf("Err = %v, want %v", err, tt.want)
			}
			if got := closed(b.Done()); got != (tt.want != nil) {
				t.Errorf("Done closed = %v, want %v", got, tt.want != nil)
			}
			if early != nil && early != b.Done() {
				t.Error("Done returned another channel")
			}
			if b.Value("key") != nil {
				t.Error("Value of an unknown key is not nil")
			}
		})
	}
}

// TestBudgetChildren: contexts derived from a budget end with it, by end
// or by the deadline, and context.AfterFunc runs.
func TestBudgetChildren(t *testing.T) {
	t.Parallel()
	b := newBudget(time.Now().Add(time.Hour), waitHook{})
	child, cancel := context.WithCancel(b)
	defer cancel()
	timed, cancel2 := context.WithTimeout(b, time.Hour)
	defer cancel2()
	ran := make(chan struct{})
	context.AfterFunc(b, func() { close(ran) })
	if child.Err() != nil || timed.Err() != nil {
		t.Fatal("children ended before the budget")
	}
	b.end()
	<-child.Done()
	<-timed.Done()
	<-ran
	if !errors.Is(child.Err(), context.Canceled) {
		t.Errorf("child Err = %v", child.Err())
	}

	short := newBudget(time.Now().Add(20*time.Millisecond), waitHook{})
	defer short.end()
	child, cancel = context.WithCancel(short)
	defer cancel()
	<-child.Done()
	if !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Errorf("child of an expired budget: Err = %v", child.Err())
	}
}

// countWaits is a waiter that counts what it is told.
type countWaits struct {
	mu   sync.Mutex
	seqs []uint64
}

func (c *countWaits) willWait(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seqs = append(c.seqs, seq)
}

// TestBudgetHook: the hook hears once that the query waits, whether it
// asks for Done or says so with pipeline.Waits, and not after the query
// ended; a budget without a hook offers no Waiter.
func TestBudgetHook(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		do    func(b *budget)
		wants int
	}{
		{"done", func(b *budget) { b.Done(); b.Done() }, 1},
		{"waits", func(b *budget) { pipeline.Waits(b); pipeline.Waits(b) }, 1},
		{"waits then done", func(b *budget) { pipeline.Waits(b); b.Done() }, 1},
		{"derived context", func(b *budget) {
			ctx, cancel := context.WithCancel(b)
			defer cancel()
			pipeline.Waits(ctx)
		}, 1},
		{"nothing", func(b *budget) { b.Err(); b.Deadline() }, 0},
		{"after end", func(b *budget) { b.end(); b.Done(); pipeline.Waits(b) }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &countWaits{}
			b := newBudget(time.Now().Add(time.Hour), waitHook{w: w, seq: 7})
			tt.do(b)
			if len(w.seqs) != tt.wants {
				t.Fatalf("told %d times, want %d", len(w.seqs), tt.wants)
			}
			for _, s := range w.seqs {
				if s != 7 {
					t.Errorf("told seq %d, want 7", s)
				}
			}
		})
	}
	if v := newBudget(time.Now().Add(time.Hour), waitHook{}).Value(pipeline.WaiterKey); v != nil {
		t.Errorf("a budget without a hook offers %v as its waiter", v)
	}
}
