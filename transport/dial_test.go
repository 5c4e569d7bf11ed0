package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// wireSlack is how late a failure that should be prompt may come on a
// loaded machine; the contexts it is compared with are longer.
const wireSlack = 5 * time.Second

// wireFamilies are the loopback addresses every socket test runs on.
var wireFamilies = []struct{ name, ip string }{
	{"ipv4", "127.0.0.1"},
	{"ipv6", "::1"},
}

// wireBindFailed skips a test that cannot bind ::1, unless E2E_REQUIRED=1
// says the environment must support it.
func wireBindFailed(t *testing.T, ip string, err error) {
	t.Helper()
	if strings.Contains(ip, ":") && os.Getenv("E2E_REQUIRED") != "1" {
		t.Skipf("cannot bind %s: %v", ip, err)
	}
	t.Fatalf("bind %s: %v", ip, err)
}

func wireListenUDP(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	a := netip.MustParseAddr(ip)
	c, err := net.ListenUDP(FamilyOf(a).Network("udp"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		wireBindFailed(t, ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wireListenTCP(t *testing.T, ip string) *net.TCPListener {
	t.Helper()
	a := netip.MustParseAddr(ip)
	ln, err := net.ListenTCP(FamilyOf(a).Network("tcp"), net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		wireBindFailed(t, ip, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func wireAddr(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	panic(fmt.Sprintf("unexpected address %T", a))
}

// wireServe runs a miekg/dns server on a socket the test bound, returns
// once it serves, and shuts it down at cleanup.
func wireServe(t *testing.T, pc net.PacketConn, ln net.Listener, h dns.HandlerFunc) *dns.Server {
	t.Helper()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Listener: ln, Handler: h, NotifyStartedFunc: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return srv
}

// wireAnswer answers every query with one A record, 192.0.2.1.
func wireAnswer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg).SetReply(r)
	m.Answer = append(m.Answer, wireRR(r.Question[0].Name+" 60 IN A 192.0.2.1"))
	w.WriteMsg(m)
}

func wireRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

func wireQuery(name string, qtype uint16) *dns.Msg {
	return new(dns.Msg).SetQuestion(name, qtype)
}

func wireCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func wantClass(t *testing.T, err error, want Class) {
	t.Helper()
	if got := Classify(err); got != want {
		t.Fatalf("error %v: class %s, want %s", err, got, want)
	}
}

// TestExchangeRewritesQuery checks what both exchangers put on the wire: a
// fresh ID, an EDNS buffer of 1232 with DO and options kept, q untouched,
// and the reply carrying q's ID.
func TestExchangeRewritesQuery(t *testing.T) {
	t.Parallel()
	withOPT := func(size uint16, do bool) *dns.Msg {
		q := wireQuery("example.org.", dns.TypeA)
		q.SetEdns0(size, do)
		opt := q.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
		return q
	}
	type rewriteCase struct {
		name    string
		q       *dns.Msg
		wantDO  bool
		wantOpt int
	}
	// Each subtest gets its own queries: they run in parallel.
	newCases := func() []rewriteCase {
		return []rewriteCase{
			{"no edns", wireQuery("example.org.", dns.TypeA), false, 0},
			{"edns 4096 do", withOPT(4096, true), true, 1},
			{"edns 512", withOPT(512, false), false, 1},
		}
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, fam := range wireFamilies {
			t.Run(proto+"/"+fam.name, func(t *testing.T) {
				t.Parallel()
				seen := make(chan *dns.Msg, 16)
				h := func(w dns.ResponseWriter, r *dns.Msg) { seen <- r; wireAnswer(w, r) }
				var ex Exchanger
				if proto == "udp" {
					pc := wireListenUDP(t, fam.ip)
					wireServe(t, pc, nil, h)
					ex = NewUDP(wireAddr(pc.LocalAddr()), nil)
				} else {
					ln := wireListenTCP(t, fam.ip)
					wireServe(t, nil, ln, h)
					ex = NewTCP(wireAddr(ln.Addr()), TCPConfig{})
				}
				t.Cleanup(func() { ex.Close() })
				var sameID int
				cases := newCases()
				for _, tc := range cases {
					tc.q.Id = 4242
					before := tc.q.String()
					r, err := ex.Exchange(wireCtx(t, 5*time.Second), tc.q)
					if err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
					if r.Id != tc.q.Id || len(r.Answer) != 1 {
						t.Errorf("%s: reply id %d, %d answers; want id %d, 1 answer", tc.name, r.Id, len(r.Answer), tc.q.Id)
					}
					if after := tc.q.String(); after != before {
						t.Errorf("%s: query modified:\n%s\nwant\n%s", tc.name, after, before)
					}
					got := <-seen
					if got.Id == tc.q.Id {
						sameID++
					}
					opt := got.IsEdns0()
					if opt == nil {
						t.Fatalf("%s: server saw no OPT", tc.name)
					}
					if opt.UDPSize() != EDNSBufferSize || opt.Do() != tc.wantDO || len(opt.Option) != tc.wantOpt {
						t.Errorf("%s: server saw bufsize %d do %t %d options, want %d %t %d",
							tc.name, opt.UDPSize(), opt.Do(), len(opt.Option), EDNSBufferSize, tc.wantDO, tc.wantOpt)
					}
				}
				if sameID == len(cases) {
					t.Errorf("server saw the caller's ID on every query: ID not randomized")
				}
			})
		}
	}
}

// TestExchangeSharedQuery runs one query through both exchangers from many
// goroutines at once: under -race this fails if Exchange writes to q.
func TestExchangeSharedQuery(t *testing.T) {
	t.Parallel()
	pc := wireListenUDP(t, "127.0.0.1")
	ln := wireListenTCP(t, "127.0.0.1")
	wireServe(t, pc, nil, wireAnswer)
	wireServe(t, nil, ln, wireAnswer)
	u := NewUDP(wireAddr(pc.LocalAddr()), nil)
	tc := NewTCP(wireAddr(ln.Addr()), TCPConfig{})
	t.Cleanup(func() { u.Close(); tc.Close() })
	q := wireQuery("shared.example.", dns.TypeA)
	q.SetEdns0(4096, true)
	q.Rcode = dns.RcodeBadVers // an extended rcode makes packing touch the OPT
	var wg sync.WaitGroup
	for i := range 20 {
		ex := Exchanger(u)
		if i%2 == 1 {
			ex = tc
		}
		wg.Go(func() {
			if _, err := ex.Exchange(wireCtx(t, 5*time.Second), q); err != nil {
				t.Errorf("exchange: %v", err)
			}
		})
	}
	wg.Wait()
}

// TestUpstreamQueryKeepsTrailingTSIG: a query signed with TSIG goes as
// it is, but for a fresh ID: its MAC covers the OPT (buffer size and
// options) and every other byte but the ID, which the TSIG record's
// original ID stands for (RFC 8945 §4.3).
func TestUpstreamQueryKeepsTrailingTSIG(t *testing.T) {
	t.Parallel()
	q := wireQuery("example.org.", dns.TypeA)
	q.SetEdns0(4096, false)
	q.SetTsig("key.", dns.HmacSHA256, 300, 0)
	before := q.String()
	m := upstreamQuery(q, 7)
	if len(m.Extra) != 2 {
		t.Fatalf("extra has %d records, want 2", len(m.Extra))
	}
	if _, ok := m.Extra[1].(*dns.TSIG); !ok {
		t.Errorf("last additional record is %T, want *dns.TSIG", m.Extra[1])
	}
	if opt := m.IsEdns0(); opt == nil || opt.UDPSize() != 4096 {
		t.Errorf("OPT of a signed query changed: %v", opt)
	}
	if q.String() != before {
		t.Error("the query was modified")
	}
	c := *m
	c.Id = q.Id
	if c.String() != before {
		t.Errorf("signed query changed beyond its ID:\n%v\nwant\n%v", &c, before)
	}
}

func TestMatchReply(t *testing.T) {
	t.Parallel()
	q := wireQuery("Example.ORG.", dns.TypeA)
	q.Id = 7
	const id = 999
	reply := func(edit func(r *dns.Msg)) []byte {
		r := new(dns.Msg).SetReply(q)
		r.Id = id
		r.Answer = []dns.RR{wireRR("example.org. 60 IN A 192.0.2.1")}
		if edit != nil {
			edit(r)
		}
		b, err := r.Pack()
		if err != nil {
			panic(err)
		}
		return b
	}
	good := reply(nil)
	cases := []struct {
		name string
		pkt  []byte
		ok   bool
	}{
		{"match", good, true},
		{"name case differs", reply(func(r *dns.Msg) { r.Question[0].Name = "eXAMPLE.org." }), true},
		{"bare refused", reply(func(r *dns.Msg) { r.Question, r.Answer, r.Rcode = nil, nil, dns.RcodeRefused }), true},
		{"truncated", reply(func(r *dns.Msg) { r.Truncated, r.Answer = true, nil }), true},
		{"truncated mid-record", reply(func(r *dns.Msg) { r.Truncated = true })[:len(good)-2], true},
		{"empty", nil, false},
		{"short", good[:11], false},
		{"wrong id", reply(func(r *dns.Msg) { r.Id = id + 1 }), false},
		{"not a response", reply(func(r *dns.Msg) { r.Response = false }), false},
		{"other name", reply(func(r *dns.Msg) { r.Question[0].Name = "example.net." }), false},
		{"other type", reply(func(r *dns.Msg) { r.Question[0].Qtype = dns.TypeAAAA }), false},
		{"other class", reply(func(r *dns.Msg) { r.Question[0].Qclass = dns.ClassCHAOS }), false},
		{"two questions", reply(func(r *dns.Msg) { r.Question = append(r.Question, r.Question[0]) }), false},
		{"bare noerror", reply(func(r *dns.Msg) { r.Question, r.Answer = nil, nil }), false},
		{"cut mid-record", good[:len(good)-2], false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := matchReply(tc.pkt, id, q)
			if !tc.ok {
				if err == nil || !errors.Is(err, ErrMalformed) {
					t.Fatalf("got %v, %v; want an ErrMalformed", r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Id != q.Id {
				t.Errorf("reply id %d, want %d", r.Id, q.Id)
			}
		})
	}
}

// FuzzMatchReply feeds arbitrary packets to matchReply: it must not panic,
// and whatever it accepts must carry the caller's ID and question.
func FuzzMatchReply(f *testing.F) {
	q := wireQuery("example.org.", dns.TypeA)
	r := new(dns.Msg).SetReply(q)
	r.Answer = []dns.RR{wireRR("example.org. 60 IN A 192.0.2.1")}
	r.SetEdns0(1232, true)
	good, _ := r.Pack()
	f.Add(good, "example.org.", dns.TypeA)
	f.Add(good[:len(good)-3], "example.org.", dns.TypeA)
	f.Add(good[:12], "example.org.", dns.TypeA)
	f.Add([]byte{}, ".", dns.TypeNS)
	f.Fuzz(func(t *testing.T, pkt []byte, name string, qtype uint16) {
		q := wireQuery(name, qtype)
		q.Id = 1
		var id uint16
		if len(pkt) >= 2 {
			id = uint16(pkt[0])<<8 | uint16(pkt[1])
		}
		r, err := matchReply(pkt, id, q)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if r.Id != q.Id || !r.Response {
			t.Fatalf("accepted reply id %d response %t", r.Id, r.Response)
		}
		if len(r.Question) > 0 && !equalFoldASCII(r.Question[0].Name, name) {
			t.Fatalf("accepted question %q for %q", r.Question[0].Name, name)
		}
	})
}
