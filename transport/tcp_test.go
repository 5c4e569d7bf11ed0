package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
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
