package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// tcpTestClock is a fake clock, safe for concurrent use.
type tcpTestClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tcpTestClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *tcpTestClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestTCPIdleClose checks that a connection is closed after IdleTimeout
// with nothing outstanding, and that the next query dials a new one.
func TestTCPIdleClose(t *testing.T) {
	t.Parallel()
	eof := make(chan int, 4)
	s := startTCPScript(t, wireListenTCP(t, "127.0.0.1"), func(c net.Conn, n int) {
		tcpAnswer(c, n)
		eof <- n
	})
	x := newTestTCP(t, s.addr, TCPConfig{IdleTimeout: 50 * time.Millisecond})
	for want := 1; want <= 2; want++ {
		if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("idle.example.", dns.TypeA)); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-eof:
			if n != want {
				t.Fatalf("connection %d closed, want %d", n, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("idle connection %d not closed", want)
		}
	}
}

// TestTCPIdleClock checks that reuse follows the configured clock.
func TestTCPIdleClock(t *testing.T) {
	t.Parallel()
	clock := &tcpTestClock{t: time.Unix(1e9, 0)}
	s := startTCPScript(t, wireListenTCP(t, "127.0.0.1"), tcpAnswer)
	x := newTestTCP(t, s.addr, TCPConfig{IdleTimeout: time.Hour, Now: clock.now})
	steps := []struct {
		advance     time.Duration
		wantAccepts int32
	}{
		{0, 1},
		{59 * time.Minute, 1},
		{time.Hour, 2},
		{0, 2},
	}
	for i, st := range steps {
		clock.advance(st.advance)
		if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("clock.example.", dns.TypeA)); err != nil {
			t.Fatal(err)
		}
		if got := s.accepts.Load(); got != st.wantAccepts {
			t.Errorf("step %d: %d connections, want %d", i, got, st.wantAccepts)
		}
	}
}

// TestTCPCancel abandons a query, then checks that its late reply is
// dropped and the connection still serves the next query.
func TestTCPCancel(t *testing.T) {
	t.Parallel()
	got := make(chan *dns.Msg, 2)
	s := startTCPScript(t, wireListenTCP(t, "127.0.0.1"), func(c net.Conn, _ int) {
		q1, err := tcpReadMsg(c)
		if err != nil {
			return
		}
		got <- q1
		q2, err := tcpReadMsg(c)
		if err != nil {
			return
		}
		for _, q := range []*dns.Msg{q1, q2} {
			m := new(dns.Msg).SetReply(q)
			m.Answer = []dns.RR{wireRR(q.Question[0].Name + " 60 IN A 192.0.2.1")}
			tcpWriteMsg(c, m)
		}
		io.Copy(io.Discard, c)
	})
	x := newTestTCP(t, s.addr, TCPConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-got
		cancel()
	}()
	_, err := x.Exchange(ctx, wireQuery("first.example.", dns.TypeA))
	wantClass(t, err, ClassCanceled)
	r, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("second.example.", dns.TypeA))
	if err != nil {
		t.Fatal(err)
	}
	if name := r.Question[0].Name; name != "second.example." {
		t.Errorf("got the reply for %s", name)
	}
	if n := s.accepts.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	x.mu.Lock()
	c := x.cur
	x.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) != 0 {
		t.Errorf("%d calls still pending", len(c.pending))
	}
}

func TestTCPClose(t *testing.T) {
	t.Parallel()
	const callers = 3
	got := make(chan *dns.Msg, callers)
	s := startTCPScript(t, wireListenTCP(t, "127.0.0.1"), tcpSwallow(got))
	x := NewTCP(s.addr, TCPConfig{})
	errs := make(chan error, callers)
	for i := range callers {
		go func() {
			_, err := x.Exchange(wireCtx(t, 30*time.Second), wireQuery(fmt.Sprintf("c%d.example.", i), dns.TypeA))
			errs <- err
		}()
	}
	for range callers {
		<-got
	}
	x.Close()
	for range callers {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) || Classify(err) != ClassCanceled {
				t.Errorf("pending call: %v (class %s), want net.ErrClosed as canceled", err, Classify(err))
			}
		case <-time.After(wireSlack):
			t.Fatal("pending call still running after Close")
		}
	}
	_, err := x.Exchange(wireCtx(t, time.Second), wireQuery("late.example.", dns.TypeA))
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("exchange after close: %v, want net.ErrClosed", err)
	}
}

// TestTCPRetireSilent checks that a connection on which a query timed out
// with nothing read is not given new queries.
func TestTCPRetireSilent(t *testing.T) {
	t.Parallel()
	got := make(chan *dns.Msg, 4)
	s := startTCPScript(t, wireListenTCP(t, "127.0.0.1"), func(c net.Conn, n int) {
		if n == 1 {
			tcpSwallow(got)(c, n)
			return
		}
		tcpAnswer(c, n)
	})
	x := newTestTCP(t, s.addr, TCPConfig{})
	_, err := x.Exchange(wireCtx(t, time.Second), wireQuery("lost.example.", dns.TypeA))
	wantClass(t, err, ClassTimeout)
	if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("next.example.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if n := s.accepts.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// TestTCPNoLeak runs the ways a connection ends and checks that nothing
// the exchanger started outlives Close. It does not run in parallel, so
// the goroutine count is its own.
func TestTCPNoLeak(t *testing.T) {
	// readers counts connection goroutines; all counts everything, the
	// callers and test servers included.
	count := func() (readers, all int) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "dnsedge/transport.(*tcpConn)") {
				readers++
			}
		}
		return readers, runtime.NumGoroutine()
	}
	_, before := count()

	lost := make(chan *dns.Msg, 16)
	got := make(chan *dns.Msg, 16)
	s := startTCPScript(t, wireListenTCP(t, "127.0.0.1"), func(c net.Conn, n int) {
		switch n {
		case 1:
			tcpAnswer(c, n)
		case 2:
			tcpReadMsg(c) // and close
		case 3:
			tcpSwallow(lost)(c, n)
		default:
			tcpSwallow(got)(c, n)
		}
	})
	x := NewTCP(s.addr, TCPConfig{})
	q := wireQuery("leak.example.", dns.TypeA)
	for range 3 {
		if _, err := x.Exchange(wireCtx(t, 5*time.Second), q); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	s.conns[0].Close() // connection 1 ends under the exchanger
	s.mu.Unlock()
	for range 2 { // a broken connection, then one that swallows
		x.Exchange(wireCtx(t, 200*time.Millisecond), q)
	}
	// Connection 3 is retired by the timeout; 4 takes the rest.
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-got; cancel() }()
	x.Exchange(ctx, q)
	go x.Exchange(wireCtx(t, 10*time.Second), q)
	<-got
	x.Close()
	// Close waits for the readers (a reader may still be returning from
	// its deferred bookkeeping for a moment), and the server has not
	// closed anything.
	for i := 0; ; i++ {
		readers, _ := count()
		if readers == 0 {
			break
		}
		if i == 20 {
			t.Errorf("%d connection goroutines left after Close", readers)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.stop()

	deadline := time.Now().Add(wireSlack)
	for {
		readers, all := count()
		if readers == 0 && all <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", all, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
