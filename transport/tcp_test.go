package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// tcpScript is a raw TCP server: serve runs on each accepted connection
// with its 1-based index and owns the misbehaviour a test needs.
type tcpScript struct {
	addr    netip.AddrPort
	ln      *net.TCPListener
	accepts atomic.Int32
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func startTCPScript(t *testing.T, ln *net.TCPListener, serve func(c net.Conn, n int)) *tcpScript {
	t.Helper()
	s := &tcpScript{addr: wireAddr(ln.Addr()), ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.accepts.Add(1))
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				serve(c, n)
			})
		}
	})
	t.Cleanup(s.stop)
	return s
}

// stop closes the listener and every connection and waits for the
// goroutines. It may be called more than once.
func (s *tcpScript) stop() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func tcpReadMsg(r io.Reader) (*dns.Msg, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	return m, m.Unpack(b)
}

func tcpWriteMsg(w io.Writer, m *dns.Msg) error {
	b := wirePack(m)
	_, err := w.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
	return err
}

// tcpAnswer answers every query on c in order, like wireAnswer.
func tcpAnswer(c net.Conn, _ int) {
	for {
		q, err := tcpReadMsg(c)
		if err != nil {
			return
		}
		m := new(dns.Msg).SetReply(q)
		m.Answer = []dns.RR{wireRR(q.Question[0].Name + " 60 IN A 192.0.2.1")}
		if tcpWriteMsg(c, m) != nil {
			return
		}
	}
}

// tcpSwallow reads queries and never answers, reporting each on got.
func tcpSwallow(got chan<- *dns.Msg) func(net.Conn, int) {
	return func(c net.Conn, _ int) {
		for {
			q, err := tcpReadMsg(c)
			if err != nil {
				return
			}
			got <- q
		}
	}
}

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

func newTestTCP(t *testing.T, addr netip.AddrPort, cfg TCPConfig) *TCP {
	tc := NewTCP(addr, cfg)
	t.Cleanup(func() { tc.Close() })
	return tc
}

// TestTCPPipelining sends 100 queries at once; the server reads them all on
// one connection and answers in reverse order.
func TestTCPPipelining(t *testing.T) {
	t.Parallel()
	const n = 100
	for _, fam := range wireFamilies {
		t.Run(fam.name, func(t *testing.T) {
			t.Parallel()
			s := startTCPScript(t, wireListenTCP(t, fam.ip), func(c net.Conn, _ int) {
				var qs []*dns.Msg
				for len(qs) < n {
					q, err := tcpReadMsg(c)
					if err != nil {
						return
					}
					qs = append(qs, q)
				}
				for i := n - 1; i >= 0; i-- {
					m := new(dns.Msg).SetReply(qs[i])
					name := qs[i].Question[0].Name
					m.Answer = []dns.RR{wireRR(name + " 60 IN A 10.0.0." + strings.TrimSuffix(name[1:], ".example."))}
					if tcpWriteMsg(c, m) != nil {
						return
					}
				}
				io.Copy(io.Discard, c)
			})
			tc := newTestTCP(t, s.addr, TCPConfig{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					q := wireQuery(fmt.Sprintf("q%d.example.", i), dns.TypeA)
					q.Id = uint16(i)
					r, err := tc.Exchange(wireCtx(t, 10*time.Second), q)
					if err != nil {
						t.Errorf("query %d: %v", i, err)
						return
					}
					want := fmt.Sprintf("10.0.0.%d", i)
					if got := r.Answer[0].(*dns.A).A.String(); got != want || r.Id != q.Id {
						t.Errorf("query %d: got %s id %d, want %s id %d", i, got, r.Id, want, q.Id)
					}
				})
			}
			wg.Wait()
			if got := s.accepts.Load(); got != 1 {
				t.Errorf("server accepted %d connections, want 1", got)
			}
		})
	}
}

// TestTCPFailures covers replies that never come or are wrong.
func TestTCPFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		serve   func(c net.Conn, n int)
		callers int
		want    Class
	}{
		{"server closes mid-flight", func(c net.Conn, _ int) { tcpReadMsg(c) }, 3, ClassNetwork},
		{"server resets", func(c net.Conn, _ int) {
			tcpReadMsg(c)
			c.(*net.TCPConn).SetLinger(0)
		}, 1, ClassNetwork},
		{"wrong question", func(c net.Conn, _ int) {
			for {
				q, err := tcpReadMsg(c)
				if err != nil {
					return
				}
				m := new(dns.Msg).SetReply(q)
				m.Question[0].Name = "evil.example."
				tcpWriteMsg(c, m)
			}
		}, 2, ClassMalformed},
		{"refused", nil, 1, ClassNetwork},
	}
	for _, fam := range wireFamilies {
		for _, tc := range cases {
			t.Run(fam.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ln := wireListenTCP(t, fam.ip)
				addr := wireAddr(ln.Addr())
				if tc.serve == nil {
					ln.Close()
				} else {
					startTCPScript(t, ln, tc.serve)
				}
				x := newTestTCP(t, addr, TCPConfig{})
				var wg sync.WaitGroup
				for i := range tc.callers {
					wg.Go(func() {
						start := time.Now()
						_, err := x.Exchange(wireCtx(t, 30*time.Second), wireQuery(fmt.Sprintf("f%d.example.", i), dns.TypeA))
						if got := Classify(err); got != tc.want {
							t.Errorf("caller %d: %v: class %s, want %s", i, err, got, tc.want)
						}
						if el := time.Since(start); el > wireSlack {
							t.Errorf("caller %d failed after %v, want promptly", i, el)
						}
					})
				}
				wg.Wait()
			})
		}
	}
}

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

func TestTCPReconnect(t *testing.T) {
	t.Parallel()
	for _, fam := range wireFamilies {
		t.Run(fam.name, func(t *testing.T) {
			t.Parallel()
			s := startTCPScript(t, wireListenTCP(t, fam.ip), tcpAnswer)
			x := newTestTCP(t, s.addr, TCPConfig{})
			if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("before.example.", dns.TypeA)); err != nil {
				t.Fatal(err)
			}
			s.stop()
			ln, err := net.ListenTCP(FamilyOf(s.addr.Addr()).Network("tcp"), net.TCPAddrFromAddrPort(s.addr))
			if err != nil {
				t.Fatalf("rebind %s: %v", s.addr, err)
			}
			startTCPScript(t, ln, tcpAnswer)
			if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("after.example.", dns.TypeA)); err != nil {
				t.Fatalf("after restart: %v", err)
			}
		})
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

// TestTCPMaxInFlight checks that a caller past the limit waits for a slot
// and sends nothing when its ctx ends first.
func TestTCPMaxInFlight(t *testing.T) {
	t.Parallel()
	got := make(chan *dns.Msg, 4)
	s := startTCPScript(t, wireListenTCP(t, "127.0.0.1"), tcpSwallow(got))
	x := newTestTCP(t, s.addr, TCPConfig{MaxInFlight: 1})
	first := make(chan error, 1)
	go func() {
		_, err := x.Exchange(wireCtx(t, 10*time.Second), wireQuery("one.example.", dns.TypeA))
		first <- err
	}()
	<-got
	_, err := x.Exchange(wireCtx(t, 100*time.Millisecond), wireQuery("two.example.", dns.TypeA))
	wantClass(t, err, ClassTimeout)
	x.Close()
	<-first
	s.stop()
	if n := len(got); n != 0 {
		t.Errorf("server got %d queries past the limit", n)
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
	// Close waits for the readers, and the server has not closed anything.
	if readers, _ := count(); readers != 0 {
		t.Errorf("%d connection goroutines left after Close", readers)
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

func BenchmarkTCPExchange(b *testing.B) {
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				reply := wirePack(new(dns.Msg).SetReply(wireQuery("bench.example.", dns.TypeA)))
				frame := append(binary.BigEndian.AppendUint16(nil, uint16(len(reply))), reply...)
				var hdr [2]byte
				buf := make([]byte, maxMsgSize)
				for {
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					n := binary.BigEndian.Uint16(hdr[:])
					if _, err := io.ReadFull(c, buf[:n]); err != nil {
						return
					}
					copy(frame[2:4], buf[:2])
					if _, err := c.Write(frame); err != nil {
						return
					}
				}
			})
		}
	})
	x := NewTCP(wireAddr(ln.Addr()), TCPConfig{})
	b.Cleanup(func() {
		x.Close()
		ln.Close()
		wg.Wait()
	})
	q := wireQuery("bench.example.", dns.TypeA)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := x.Exchange(context.Background(), q); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
