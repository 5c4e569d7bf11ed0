package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// udpScript answers every datagram on pc through fn, which gets the query
// (nil if it did not parse) and a send function to the client. It stops at
// cleanup.
func udpScript(t *testing.T, pc *net.UDPConn, fn func(q *dns.Msg, send func([]byte))) {
	t.Helper()
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
				q = nil
			}
			fn(q, func(b []byte) { pc.WriteToUDPAddrPort(b, from) })
		}
	})
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
}

func wirePack(m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// udpFallbackFake is the TCP exchanger given to NewUDP; an unset field
// panics, failing the test.
type udpFallbackFake struct {
	exchange func(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
	close    func() error
}

func (f *udpFallbackFake) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	return f.exchange(ctx, q)
}
func (f *udpFallbackFake) Close() error { return f.close() }

func TestUDPExchange(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, ip string
		mapped   bool // dial the IPv4-mapped form of ip
	}{
		{"ipv4", "127.0.0.1", false},
		{"ipv6", "::1", false},
		{"ipv4-mapped", "127.0.0.1", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pc := wireListenUDP(t, tc.ip)
			from := make(chan net.Addr, 2)
			wireServe(t, pc, nil, func(w dns.ResponseWriter, r *dns.Msg) {
				from <- w.RemoteAddr()
				m := new(dns.Msg).SetReply(r)
				m.Answer = []dns.RR{wireRR(r.Question[0].Name + " 60 IN A 192.0.2." + r.Question[0].Name[1:2])}
				w.WriteMsg(m)
			})
			addr := wireAddr(pc.LocalAddr())
			if tc.mapped {
				addr = netip.AddrPortFrom(netip.AddrFrom16(addr.Addr().As16()), addr.Port())
			}
			u := NewUDP(addr, nil)
			t.Cleanup(func() { u.Close() })
			r1, err := u.Exchange(wireCtx(t, 5*time.Second), wireQuery("a1.example.", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			// A second reply read into the same pooled buffer must not
			// change the first.
			if _, err := u.Exchange(wireCtx(t, 5*time.Second), wireQuery("a2.example.", dns.TypeA)); err != nil {
				t.Fatal(err)
			}
			if got := r1.Answer[0].(*dns.A).A.String(); got != "192.0.2.1" {
				t.Errorf("first answer %s, want 192.0.2.1", got)
			}
			for range 2 {
				ap := wireAddr(<-from).Addr()
				if ap.Is4In6() || ap.Unmap().String() != tc.ip {
					t.Errorf("server saw client %s, want an address of %s's family", ap, tc.ip)
				}
			}
		})
	}
}

// TestUDPIgnoresBadPackets sends unusable packets ahead of the real answer:
// they must be skipped, and when nothing else comes the error says so if
// they carried the query's ID.
func TestUDPIgnoresBadPackets(t *testing.T) {
	t.Parallel()
	type edit func(r *dns.Msg) []byte
	bad := []struct {
		name string
		edit edit
	}{
		{"wrong id", func(r *dns.Msg) []byte { r.Id++; return wirePack(r) }},
		{"wrong name", func(r *dns.Msg) []byte { r.Question[0].Name = "evil.example."; return wirePack(r) }},
		{"wrong type", func(r *dns.Msg) []byte { r.Question[0].Qtype = dns.TypeMX; return wirePack(r) }},
		{"not a response", func(r *dns.Msg) []byte { r.Response = false; return wirePack(r) }},
		{"junk", func(*dns.Msg) []byte { return []byte("not dns at all") }},
	}
	for _, fam := range wireFamilies {
		for _, b := range bad {
			for _, thenAnswer := range []bool{true, false} {
				name := fmt.Sprintf("%s/%s/answer=%t", fam.name, b.name, thenAnswer)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					pc := wireListenUDP(t, fam.ip)
					udpScript(t, pc, func(q *dns.Msg, send func([]byte)) {
						r := new(dns.Msg).SetReply(q)
						r.Answer = []dns.RR{wireRR("spoof.example. 60 IN A 192.0.2.66")}
						send(b.edit(r))
						if thenAnswer {
							r := new(dns.Msg).SetReply(q)
							r.Answer = []dns.RR{wireRR("spoof.example. 60 IN A 192.0.2.1")}
							send(wirePack(r))
						}
					})
					u := NewUDP(wireAddr(pc.LocalAddr()), nil)
					q := wireQuery("SPOOF.example.", dns.TypeA)
					budget := 300 * time.Millisecond // spent in full when no answer comes
					if thenAnswer {
						budget = 30 * time.Second
					}
					r, err := u.Exchange(wireCtx(t, budget), q)
					if !thenAnswer {
						// A datagram with the query's ID that is not its
						// answer makes the failure malformed; one with
						// another ID may be a late answer to an earlier
						// query on the shared socket, and counts against
						// none.
						want := ClassMalformed
						if b.name == "wrong id" || b.name == "junk" {
							want = ClassTimeout
						}
						wantClass(t, err, want)
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if got := r.Answer[0].(*dns.A).A.String(); got != "192.0.2.1" || r.Id != q.Id {
						t.Errorf("accepted %s with id %d, want 192.0.2.1 with id %d", got, r.Id, q.Id)
					}
				})
			}
		}
	}
}

func txtAnswer(r *dns.Msg, n int) *dns.Msg {
	m := new(dns.Msg).SetReply(r)
	for i := range n {
		m.Answer = append(m.Answer, wireRR(fmt.Sprintf(`%s 60 IN TXT "%03d %s"`, r.Question[0].Name, i, strings.Repeat("x", 100))))
	}
	return m
}

func TestUDPTruncated(t *testing.T) {
	t.Parallel()
	errDown := errors.New("tcp down")
	cases := []struct {
		name      string
		tcp       func(t *testing.T, ip string) Exchanger // nil: no retry
		wantClass Class
		wantAns   int
		wantTC    bool
	}{
		{"retry over tcp", func(t *testing.T, ip string) Exchanger {
			ln := wireListenTCP(t, ip)
			wireServe(t, nil, ln, func(w dns.ResponseWriter, r *dns.Msg) { w.WriteMsg(txtAnswer(r, 40)) })
			return NewTCP(wireAddr(ln.Addr()), TCPConfig{})
		}, ClassOK, 40, false},
		{"tcp fails", func(t *testing.T, ip string) Exchanger {
			return &udpFallbackFake{
				exchange: func(context.Context, *dns.Msg) (*dns.Msg, error) {
					return nil, &ExchangeError{Class: ClassNetwork, Err: errDown}
				},
				close: func() error { return nil },
			}
		}, ClassTruncated, 0, false},
		{"tcp refused", func(t *testing.T, ip string) Exchanger {
			ln := wireListenTCP(t, ip)
			addr := wireAddr(ln.Addr())
			ln.Close()
			return NewTCP(addr, TCPConfig{})
		}, ClassTruncated, 0, false},
		{"tcp canceled", func(t *testing.T, ip string) Exchanger {
			return &udpFallbackFake{
				exchange: func(context.Context, *dns.Msg) (*dns.Msg, error) { return nil, context.Canceled },
				close:    func() error { return nil },
			}
		}, ClassCanceled, 0, false},
		{"no tcp", nil, ClassOK, 0, true},
	}
	for _, fam := range wireFamilies {
		for _, tc := range cases {
			t.Run(fam.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				pc := wireListenUDP(t, fam.ip)
				wireServe(t, pc, nil, func(w dns.ResponseWriter, r *dns.Msg) {
					m := txtAnswer(r, 40)
					m.Truncate(EDNSBufferSize)
					w.WriteMsg(m)
				})
				var tcp Exchanger
				if tc.tcp != nil {
					tcp = tc.tcp(t, fam.ip)
				}
				u := NewUDP(wireAddr(pc.LocalAddr()), tcp)
				t.Cleanup(func() { u.Close() })
				q := wireQuery("big.example.", dns.TypeTXT)
				r, err := u.Exchange(wireCtx(t, 5*time.Second), q)
				wantClass(t, err, tc.wantClass)
				if tc.wantClass == ClassTruncated && !errors.Is(err, ErrTruncated) {
					t.Errorf("error %v does not wrap ErrTruncated", err)
				}
				if tc.name == "tcp fails" && !errors.Is(err, errDown) {
					t.Errorf("error %v does not wrap the TCP error", err)
				}
				if err != nil {
					return
				}
				if r.Truncated != tc.wantTC || r.Id != q.Id || (tc.wantAns > 0 && len(r.Answer) != tc.wantAns) {
					t.Errorf("reply TC=%t id %d with %d answers; want TC=%t id %d with %d", r.Truncated, r.Id, len(r.Answer), tc.wantTC, q.Id, tc.wantAns)
				}
			})
		}
	}
}

// TestUDPNoAnswer covers the ways an exchange ends without a reply.
func TestUDPNoAnswer(t *testing.T) {
	t.Parallel()
	const budget = 200 * time.Millisecond
	cases := []struct {
		name   string
		setup  func(t *testing.T, ip string, got chan<- struct{}) netip.AddrPort
		cancel bool // cancel once the server has the query
		want   Class
	}{
		{"silent server", func(t *testing.T, ip string, got chan<- struct{}) netip.AddrPort {
			pc := wireListenUDP(t, ip)
			udpScript(t, pc, func(*dns.Msg, func([]byte)) { got <- struct{}{} })
			return wireAddr(pc.LocalAddr())
		}, false, ClassTimeout},
		{"canceled", func(t *testing.T, ip string, got chan<- struct{}) netip.AddrPort {
			pc := wireListenUDP(t, ip)
			udpScript(t, pc, func(*dns.Msg, func([]byte)) { got <- struct{}{} })
			return wireAddr(pc.LocalAddr())
		}, true, ClassCanceled},
		{"port unreachable", func(t *testing.T, ip string, got chan<- struct{}) netip.AddrPort {
			pc := wireListenUDP(t, ip)
			addr := wireAddr(pc.LocalAddr())
			pc.Close()
			return addr
		}, false, ClassNetwork},
	}
	for _, fam := range wireFamilies {
		for _, tc := range cases {
			t.Run(fam.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				got := make(chan struct{}, 1)
				u := NewUDP(tc.setup(t, fam.ip, got), nil)
				ctx, cancel := context.WithTimeout(t.Context(), budget)
				defer cancel()
				if tc.cancel {
					ctx, cancel = context.WithCancel(t.Context())
					defer cancel()
					go func() {
						<-got
						cancel()
					}()
				}
				start := time.Now()
				_, err := u.Exchange(ctx, wireQuery("example.org.", dns.TypeA))
				wantClass(t, err, tc.want)
				if el := time.Since(start); el > budget+wireSlack {
					t.Errorf("took %v, budget %v", el, budget)
				}
			})
		}
	}
}

func TestUDPClose(t *testing.T) {
	t.Parallel()
	closed := 0
	u := NewUDP(netip.MustParseAddrPort("127.0.0.1:53"), &udpFallbackFake{close: func() error { closed++; return nil }})
	u.Close()
	u.Close()
	_, err := u.Exchange(t.Context(), wireQuery("example.org.", dns.TypeA))
	if !errors.Is(err, net.ErrClosed) || Classify(err) != ClassCanceled {
		t.Errorf("exchange after close: %v (class %s), want net.ErrClosed as canceled", err, Classify(err))
	}
	if closed != 1 {
		t.Errorf("tcp closed %d times, want 1", closed)
	}
}

func BenchmarkUDPExchange(b *testing.B) {
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		b.Fatal(err)
	}
	reply := wirePack(new(dns.Msg).SetReply(wireQuery("bench.example.", dns.TypeA)))
	go func() {
		buf := make([]byte, maxMsgSize)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			copy(reply[:2], buf[:n])
			pc.WriteToUDPAddrPort(reply, from)
		}
	}()
	b.Cleanup(func() { pc.Close() })
	u := NewUDP(wireAddr(pc.LocalAddr()), nil)
	q := wireQuery("bench.example.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.Exchange(b.Context(), q); err != nil {
			b.Fatal(err)
		}
	}
}
