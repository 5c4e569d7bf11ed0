package transport

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// udpRecorder answers every query on a loopback socket with an A record
// naming the query, and records each query's source port and ID.
type udpRecorder struct {
	mu    sync.Mutex
	ports map[uint16]int
	ids   []uint16
}

func newUDPRecorder(t *testing.T, ip string, delay func(q *dns.Msg) time.Duration) (*udpRecorder, netip.AddrPort) {
	t.Helper()
	rec := &udpRecorder{ports: make(map[uint16]int)}
	pc := wireListenUDP(t, ip)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, maxMsgSize)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			rec.mu.Lock()
			rec.ports[from.Port()]++
			rec.ids = append(rec.ids, q.Id)
			rec.mu.Unlock()
			r := new(dns.Msg).SetReply(q)
			r.Answer = []dns.RR{wireRR(q.Question[0].Name + " 60 IN A 192.0.2.1")}
			b := wirePack(r)
			if delay == nil {
				pc.WriteToUDPAddrPort(b, from)
				continue
			}
			wg.Go(func() {
				time.Sleep(delay(q))
				pc.WriteToUDPAddrPort(b, from)
			})
		}
	})
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	return rec, wireAddr(pc.LocalAddr())
}

// TestUDPUnpredictability: over 10,000 upstream queries, the IDs are
// spread like random 16-bit numbers (distinct values and every bit set
// about half the time) and the source ports change as sockets retire: at
// least one port per DefaultUDPSocketQueries queries, and no port carries
// more than its share.
func TestUDPUnpredictability(t *testing.T) {
	t.Parallel()
	const n = 10000
	rec, addr := newUDPRecorder(t, "127.0.0.1", nil)
	u := NewUDP(addr, nil)
	t.Cleanup(func() { u.Close() })
	var wg sync.WaitGroup
	var failed atomic.Int32
	for g := range 8 {
		wg.Go(func() {
			for i := range n / 8 {
				if _, err := u.Exchange(wireCtx(t, 5*time.Second), wireQuery(fmt.Sprintf("q%d-%d.example.", g, i), dns.TypeA)); err != nil {
					if failed.Add(1) == 1 {
						t.Logf("first failure: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d queries failed", f, n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.ids) != n {
		t.Fatalf("upstream saw %d queries, want %d", len(rec.ids), n)
	}
	// 10,000 draws from 65,536 values give about 9,270 distinct ones.
	distinct := map[uint16]bool{}
	var ones [16]int
	for _, id := range rec.ids {
		distinct[id] = true
		for b := range 16 {
			ones[b] += int(id >> b & 1)
		}
	}
	if len(distinct) < 9000 {
		t.Errorf("%d distinct IDs in %d queries, want at least 9,000", len(distinct), n)
	}
	for b, c := range ones {
		if c < n*45/100 || c > n*55/100 {
			t.Errorf("ID bit %d set in %d of %d queries, want 45-55%%", b, c, n)
		}
	}
	// The kernel may give a new socket the port of one already retired
	// (a few dozen sockets over the ephemeral range: a few percent of
	// runs): such a port carries two sockets' share. So allow two ports
	// less than one per share, and a port over one share only twice,
	// none over two.
	if min := n/DefaultUDPSocketQueries - 2; len(rec.ports) < min {
		t.Errorf("%d source ports in %d queries, want at least %d", len(rec.ports), n, min)
	}
	share := DefaultUDPSocketQueries + 8 // a worn socket may carry the query that found it worn
	over := 0
	for p, c := range rec.ports {
		if c > share {
			over++
		}
		if c > 2*share || over > 2 {
			t.Errorf("port %d carried %d queries (%d ports over one socket's share of %d)", p, c, over, DefaultUDPSocketQueries)
		}
	}
	t.Logf("%d queries: %d distinct IDs, %d source ports", n, len(distinct), len(rec.ports))
}

// TestUDPSocketsShared: sequential queries share the pool's sockets
// instead of opening one each, and a socket past its age is retired
// (on the pool's clock) and replaced.
func TestUDPSocketsShared(t *testing.T) {
	t.Parallel()
	rec, addr := newUDPRecorder(t, "127.0.0.1", nil)
	u := NewUDP(addr, nil)
	t.Cleanup(func() { u.Close() })
	var clock atomic.Int64
	u.pool.now = func() time.Time { return time.Unix(clock.Load(), 0) }
	ask := func(k int) {
		t.Helper()
		for i := range k {
			if _, err := u.Exchange(wireCtx(t, 5*time.Second), wireQuery(fmt.Sprintf("s%d.example.", i), dns.TypeA)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ask(200)
	rec.mu.Lock()
	before := len(rec.ports)
	rec.mu.Unlock()
	if before > DefaultUDPSockets {
		t.Fatalf("200 queries went out on %d ports, want at most %d sockets' worth", before, DefaultUDPSockets)
	}
	clock.Add(int64(DefaultUDPSocketAge/time.Second) + 1)
	ask(200)
	rec.mu.Lock()
	after := len(rec.ports)
	rec.mu.Unlock()
	if after <= before {
		t.Errorf("no new source port after the sockets' age passed (%d ports before, %d after)", before, after)
	}
}

// TestUDPDemux: queries in flight together on shared sockets, answered
// in random order, each get their own answer.
func TestUDPDemux(t *testing.T) {
	t.Parallel()
	for _, fam := range wireFamilies {
		t.Run(fam.name, func(t *testing.T) {
			t.Parallel()
			_, addr := newUDPRecorder(t, fam.ip, func(q *dns.Msg) time.Duration {
				return time.Duration(q.Id%20) * time.Millisecond
			})
			u := NewUDP(addr, nil)
			t.Cleanup(func() { u.Close() })
			var wg sync.WaitGroup
			errs := make(chan error, 64*20)
			for g := range 64 {
				wg.Go(func() {
					for i := range 20 {
						name := fmt.Sprintf("d%d-%d.example.", g, i)
						r, err := u.Exchange(wireCtx(t, 10*time.Second), wireQuery(name, dns.TypeA))
						if err == nil && (len(r.Answer) != 1 || r.Answer[0].Header().Name != name) {
							err = fmt.Errorf("%s got %v", name, r.Answer)
						}
						if err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestUDPOversizedReply: a reply longer than the read buffer (an upstream
// ignoring the EDNS size asked for) is taken as truncated, so the race
// asks again over TCP.
func TestUDPOversizedReply(t *testing.T) {
	t.Parallel()
	pc := wireListenUDP(t, "127.0.0.1")
	udpScript(t, pc, func(q *dns.Msg, send func([]byte)) {
		send(wirePack(txtAnswer(q, 60))) // about 6.5 KB
	})
	u := NewUDP(wireAddr(pc.LocalAddr()), nil)
	t.Cleanup(func() { u.Close() })
	r, err := u.Exchange(wireCtx(t, 5*time.Second), wireQuery("big.example.", dns.TypeTXT))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated {
		t.Errorf("a %d-answer reply cut at %d bytes came back without TC", len(r.Answer), udpReadBuf)
	}
}

// TestUDPCloseInFlight: Close ends the exchanges under way at once (as
// canceled) and leaves no socket reader behind.
func TestUDPCloseInFlight(t *testing.T) {
	t.Parallel()
	pc := wireListenUDP(t, "127.0.0.1")
	got := make(chan struct{}, 4)
	udpScript(t, pc, func(*dns.Msg, func([]byte)) { got <- struct{}{} })
	u := NewUDP(wireAddr(pc.LocalAddr()), nil)
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := u.Exchange(wireCtx(t, 30*time.Second), wireQuery(fmt.Sprintf("c%d.example.", i), dns.TypeA))
			errs <- err
		}()
	}
	for range 4 {
		<-got
	}
	start := time.Now()
	u.Close() // waits for the readers
	for range 4 {
		err := <-errs
		if Classify(err) != ClassCanceled || !strings.Contains(err.Error(), "closed") {
			t.Errorf("exchange under way at close: %v (class %s), want closed, canceled", err, Classify(err))
		}
	}
	if el := time.Since(start); el > wireSlack {
		t.Errorf("close took %v", el)
	}
	if _, err := u.Exchange(context.Background(), wireQuery("late.example.", dns.TypeA)); Classify(err) != ClassCanceled {
		t.Errorf("exchange after close: %v", err)
	}
}

// TestUDPCloseRetired: Close also ends the queries in flight on a socket
// already retired (worn out by age, on the pool's clock), instead of
// leaving them to their deadlines.
func TestUDPCloseRetired(t *testing.T) {
	t.Parallel()
	pc := wireListenUDP(t, "127.0.0.1")
	got := make(chan struct{}, 4)
	udpScript(t, pc, func(*dns.Msg, func([]byte)) { got <- struct{}{} })
	u := NewUDP(wireAddr(pc.LocalAddr()), nil)
	var clock atomic.Int64
	u.pool.now = func() time.Time { return time.Unix(clock.Load(), 0) }
	errs := make(chan error, 2)
	ask := func(name string) {
		go func() {
			_, err := u.Exchange(wireCtx(t, 30*time.Second), wireQuery(name, dns.TypeA))
			errs <- err
		}()
		<-got
	}
	ask("first.example.")
	clock.Add(int64(DefaultUDPSocketAge/time.Second) + 1)
	ask("second.example.") // finds the first socket worn out and retires it
	u.pool.mu.Lock()
	for _, s := range u.pool.slots {
		if s != nil && s.uses > 1 {
			t.Errorf("a worn socket is still in the pool")
		}
	}
	u.pool.mu.Unlock()
	start := time.Now()
	u.Close()
	for range 2 {
		if err := <-errs; Classify(err) != ClassCanceled {
			t.Errorf("exchange under way at close: %v (class %s), want canceled", err, Classify(err))
		}
	}
	if el := time.Since(start); el > wireSlack {
		t.Errorf("close took %v: queries on the retired socket waited for their deadlines", el)
	}
}

// TestUDPWaitTimerRearmed: a wait reused for another query re-arms the
// expiry timer it kept, which then fires at the new deadline only and
// ends the wait on the new socket; a wait handed to an attempt on another
// clock gets a timer of that clock.
func TestUDPWaitTimerRearmed(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	s1 := &udpSock{waiting: map[uint16]*udpWait{}}
	w := &udpWait{id: 1, ch: make(chan udpResult, 1)}
	s1.waiting[w.id] = w
	w.arm(s1, clock, time.Second)
	first := w.timer
	if !w.timer.Stop() {
		t.Fatal("a timer stopped before its deadline reports it had fired")
	}
	s1.done(w)
	w.reset()

	s2 := &udpSock{waiting: map[uint16]*udpWait{}}
	w.id = 2
	s2.waiting[w.id] = w
	w.arm(s2, clock, 2*time.Second)
	if w.timer != first {
		t.Fatal("the wait's timer was made anew instead of re-armed")
	}
	clock.Advance(1500 * time.Millisecond) // past the first deadline only
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("the re-armed timer is not pending after the first query's deadline: %v", err)
	}
	clock.Advance(time.Second)
	select {
	case res := <-w.ch:
		if !res.expired {
			t.Fatalf("result %+v, want expired", res)
		}
	case <-ctx.Done():
		t.Fatal("the re-armed timer did not end the wait at its deadline")
	}
	s2.mu.Lock()
	left := len(s2.waiting)
	s2.mu.Unlock()
	if left != 0 {
		t.Errorf("%d waits left on the socket after expiry", left)
	}

	other := clockwork.NewFakeClock()
	w.reset()
	w.arm(s2, other, time.Second)
	if w.timer == first {
		t.Error("a wait on another clock kept the first clock's timer")
	}
	w.timer.Stop()
}
