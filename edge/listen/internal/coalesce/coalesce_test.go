package coalesce

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeConn records what a Writer does to its connection; other net.Conn
// methods panic (the embedded interface is nil).
type fakeConn struct {
	net.Conn
	writes    []string
	deadlines int
	closed    int
	fail      error
}

func (c *fakeConn) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

func (c *fakeConn) SetWriteDeadline(time.Time) error { c.deadlines++; return nil }

func (c *fakeConn) Close() error { c.closed++; return nil }

func newWriter(c *fakeConn, lazy bool, onError func(error)) (*Writer, *sync.Mutex) {
	var mu sync.Mutex
	w := new(Writer)
	w.Init(&mu, c, func() time.Duration { return time.Minute }, lazy, onError)
	return w, &mu
}

func TestWriter(t *testing.T) {
	t.Parallel()
	t.Run("queued while flushing leaves in one write", func(t *testing.T) {
		c := &fakeConn{}
		w, mu := newWriter(c, false, nil)
		mu.Lock()
		if w.StartLocked() {
			t.Fatal("flusher role with nothing queued")
		}
		w.Write([]byte("a"))
		if !w.StartLocked() {
			t.Fatal("no flusher role with something queued")
		}
		w.Write([]byte("b"))
		if w.StartLocked() {
			t.Fatal("a second flusher")
		}
		if n := w.QueuedLocked(); n != 2 {
			t.Fatalf("%d bytes queued, want 2", n)
		}
		mu.Unlock()
		w.Flush()
		if len(c.writes) != 1 || c.writes[0] != "ab" || c.closed != 0 {
			t.Fatalf("writes %q, closed %d", c.writes, c.closed)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			lazy bool
			want int
		}{{"every write", false, 2}, {"lazy", true, 1}} {
			c := &fakeConn{}
			w, mu := newWriter(c, tt.lazy, nil)
			for range 2 {
				mu.Lock()
				w.Write([]byte("x"))
				w.StartLocked()
				mu.Unlock()
				w.Flush()
			}
			if c.deadlines != tt.want {
				t.Errorf("%s: %d deadlines set for 2 writes, want %d", tt.name, c.deadlines, tt.want)
			}
		}
	})
	t.Run("failed write breaks it", func(t *testing.T) {
		broken := errors.New("broken pipe")
		c := &fakeConn{fail: broken}
		var got error
		w, mu := newWriter(c, false, func(err error) { got = err })
		mu.Lock()
		w.Write([]byte("a"))
		w.StartLocked()
		mu.Unlock()
		w.Flush()
		mu.Lock()
		defer mu.Unlock()
		if got != broken || c.closed != 1 || !w.BrokenLocked() {
			t.Fatalf("error %v, closed %d, broken %v", got, c.closed, w.BrokenLocked())
		}
		w.Write([]byte("b"))
		if w.QueuedLocked() != 0 || w.StartLocked() {
			t.Error("a broken writer queues or flushes")
		}
	})
	t.Run("close after", func(t *testing.T) {
		c := &fakeConn{}
		w, mu := newWriter(c, false, nil)
		mu.Lock()
		w.Write([]byte("goaway"))
		w.CloseAfterLocked()
		w.StartLocked()
		mu.Unlock()
		w.Flush()
		if len(c.writes) != 1 || c.closed != 1 {
			t.Fatalf("writes %q, closed %d", c.writes, c.closed)
		}
		c = &fakeConn{}
		w, mu = newWriter(c, false, nil)
		mu.Lock()
		w.CloseAfterLocked()
		if !w.StartLocked() {
			t.Fatal("no flusher role to close with nothing queued")
		}
		mu.Unlock()
		w.Flush()
		if len(c.writes) != 0 || c.closed != 1 {
			t.Fatalf("writes %q, closed %d", c.writes, c.closed)
		}
	})
	t.Run("break returns what is queued", func(t *testing.T) {
		c := &fakeConn{}
		w, mu := newWriter(c, false, nil)
		mu.Lock()
		w.Write([]byte("last"))
		b := w.BreakLocked()
		mu.Unlock()
		if b == nil || string(*b) != "last" {
			t.Fatalf("BreakLocked = %v", b)
		}
		Release(b)
		mu.Lock()
		if !w.BrokenLocked() || w.BreakLocked() != nil {
			t.Error("not broken, or queued data after a break")
		}
		mu.Unlock()
	})
}
