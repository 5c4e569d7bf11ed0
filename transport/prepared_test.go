package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// prepared is a query as the forward stage builds it: one question and
// one OPT advertising EDNSBufferSize.
func prepared(name string, qtype uint16, opts ...dns.EDNS0) *dns.Msg {
	q := wireQuery(name, qtype)
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}, Option: opts}
	opt.SetUDPSize(EDNSBufferSize)
	q.Extra = []dns.RR{opt}
	return q
}

func TestPackPrepared(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		q    func() *dns.Msg
		want bool
	}{
		{"forward's query", func() *dns.Msg { return prepared("a.example.", dns.TypeA) }, true},
		{"with ECS and a local option", func() *dns.Msg {
			return prepared("a.example.", dns.TypeAAAA,
				&dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: []byte{0, 1, 24, 0, 192, 0, 2}},
				&dns.EDNS0_LOCAL{Code: 65001, Data: []byte("team=a")})
		}, true},
		{"no OPT", func() *dns.Msg { return wireQuery("a.example.", dns.TypeA) }, false},
		{"client's buffer size", func() *dns.Msg {
			q := prepared("a.example.", dns.TypeA)
			q.Extra[0].(*dns.OPT).SetUDPSize(4096)
			return q
		}, false},
		{"TSIG", func() *dns.Msg {
			q := prepared("a.example.", dns.TypeA)
			q.Extra = append(q.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: "k.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY}, Algorithm: dns.HmacSHA256})
			return q
		}, false},
		{"two questions", func() *dns.Msg {
			q := prepared("a.example.", dns.TypeA)
			q.Question = append(q.Question, q.Question[0])
			return q
		}, false},
		{"extended rcode", func() *dns.Msg {
			q := prepared("a.example.", dns.TypeA)
			q.Rcode = dns.RcodeBadCookie
			return q
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := tt.q()
			wire := packPrepared(q)
			if (wire != nil) != tt.want {
				t.Fatalf("packPrepared gave %d bytes, want packed=%t", len(wire), tt.want)
			}
			if wire == nil {
				return
			}
			// It is what an attempt packed on its own sent, but for the ID.
			own, err := upstreamQuery(q, q.Id).Pack()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(wire, own) {
				t.Errorf("packed once:\n%x\nper attempt:\n%x", wire, own)
			}
		})
	}
}

// TestUDPWireExchange runs queries packed once (what a race sends)
// through the UDP exchanger under an attempt's context: the query on the
// wire is the packed one with the socket's ID, a spoofed or mismatched
// datagram is ignored as on the message path, and the reply comes back
// with its wire form only when it is whole.
func TestUDPWireExchange(t *testing.T) {
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
	}
	for _, fam := range wireFamilies {
		for _, b := range bad {
			for _, thenAnswer := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/answer=%t", fam.name, b.name, thenAnswer), func(t *testing.T) {
					t.Parallel()
					q := prepared("SPOOF.example.", dns.TypeA)
					wire := packPrepared(q)
					sent := make(chan []byte, 1)
					pc := wireListenUDP(t, fam.ip)
					udpScript(t, pc, func(got *dns.Msg, send func([]byte)) {
						b2, _ := got.Pack()
						sent <- b2
						r := new(dns.Msg).SetReply(got)
						r.Answer = []dns.RR{wireRR("spoof.example. 60 IN A 192.0.2.66")}
						send(b.edit(r))
						if thenAnswer {
							r := new(dns.Msg).SetReply(got)
							r.Answer = []dns.RR{wireRR("spoof.example. 60 IN A 192.0.2.1")}
							send(wirePack(r))
						}
					})
					u := NewUDP(wireAddr(pc.LocalAddr()), nil)
					t.Cleanup(func() { u.Close() })
					budget := 300 * time.Millisecond
					if thenAnswer {
						budget = 30 * time.Second
					}
					ctx := newAttemptCtx(t.Context(), clockwork.NewRealClock(), time.Now().Add(budget))
					defer ctx.stop()
					r, rw, err := u.exchangeWire(ctx, q, wire)
					onWire := <-sent
					if !bytes.Equal(onWire[2:], wire[2:]) {
						t.Errorf("sent\n%x\nwant, but for the ID,\n%x", onWire, wire)
					}
					if !thenAnswer {
						want := ClassMalformed
						if b.name == "wrong id" {
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
					checkWire(t, r, rw)
				})
			}
		}
	}
}

// checkWire fails unless wire is r packed as the upstream sent it: same
// ID and the same message when unpacked.
func checkWire(t *testing.T, r *dns.Msg, wire []byte) {
	t.Helper()
	if wire == nil {
		t.Fatal("no wire form of a whole reply")
	}
	if id := binary.BigEndian.Uint16(wire); id != r.Id {
		t.Errorf("wire has id %d, reply %d", id, r.Id)
	}
	u := new(dns.Msg)
	if err := u.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	if u.String() != r.String() {
		t.Errorf("wire unpacks to\n%v\nreply is\n%v", u, r)
	}
}

// TestUDPWireTruncated: a truncated reply, or one cut by the read buffer,
// comes back without a wire form, so nobody stores it.
func TestUDPWireTruncated(t *testing.T) {
	t.Parallel()
	for _, big := range []bool{false, true} {
		t.Run(fmt.Sprintf("cut=%t", big), func(t *testing.T) {
			t.Parallel()
			pc := wireListenUDP(t, "127.0.0.1")
			udpScript(t, pc, func(q *dns.Msg, send func([]byte)) {
				if big {
					send(wirePack(txtAnswer(q, 60))) // cut at udpReadBuf
					return
				}
				r := new(dns.Msg).SetReply(q)
				r.Truncated = true
				send(wirePack(r))
			})
			u := NewUDP(wireAddr(pc.LocalAddr()), nil)
			t.Cleanup(func() { u.Close() })
			q := prepared("tc.example.", dns.TypeTXT)
			ctx := newAttemptCtx(t.Context(), clockwork.NewRealClock(), time.Now().Add(30*time.Second))
			defer ctx.stop()
			r, rw, err := u.exchangeWire(ctx, q, packPrepared(q))
			if err != nil {
				t.Fatal(err)
			}
			if !r.Truncated || rw != nil {
				t.Errorf("TC=%t, wire %d bytes; want TC and no wire", r.Truncated, len(rw))
			}
		})
	}
}

// TestUDPWireTimeout: an attempt's deadline ends its wait by the wait's
// own timer, on the attempt's clock, as a timeout.
func TestUDPWireTimeout(t *testing.T) {
	t.Parallel()
	pc := wireListenUDP(t, "127.0.0.1")
	got := make(chan struct{}, 1)
	udpScript(t, pc, func(*dns.Msg, func([]byte)) { got <- struct{}{} })
	u := NewUDP(wireAddr(pc.LocalAddr()), nil)
	t.Cleanup(func() { u.Close() })
	fc := clockwork.NewFakeClock()
	q := prepared("slow.example.", dns.TypeA)
	ctx := newAttemptCtx(t.Context(), fc, fc.Now().Add(2*time.Second))
	defer ctx.stop()
	done := make(chan error, 1)
	go func() {
		_, _, err := u.exchangeWire(ctx, q, packPrepared(q))
		done <- err
	}()
	<-got
	if err := fc.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	fc.Advance(time.Second)
	select {
	case err := <-done:
		t.Fatalf("ended before its deadline: %v", err)
	default:
	}
	fc.Advance(time.Second)
	wantClass(t, <-done, ClassTimeout)
}

type ctxKey struct{}

func TestAttemptCtx(t *testing.T) {
	t.Parallel()
	fc := clockwork.NewFakeClock()
	parent, cancel := context.WithCancel(context.WithValue(t.Context(), ctxKey{}, "v"))
	c := newAttemptCtx(parent, fc, fc.Now().Add(time.Second))
	defer c.stop()
	cancel() // the client going away does not end the attempt
	if c.Err() != nil || c.Value(ctxKey{}) != "v" {
		t.Fatalf("Err %v, value %v; want nil and the parent's", c.Err(), c.Value(ctxKey{}))
	}
	if dl, ok := c.Deadline(); !ok || !dl.Equal(fc.Now().Add(time.Second)) {
		t.Errorf("deadline %v %t", dl, ok)
	}
	done := c.Done()
	select {
	case <-done:
		t.Fatal("done before the deadline")
	default:
	}
	fc.Advance(time.Second)
	<-done
	if c.Err() != context.DeadlineExceeded {
		t.Errorf("Err %v after the deadline", c.Err())
	}

	// Done asked for past the deadline is closed at once.
	c3 := newAttemptCtx(t.Context(), fc, fc.Now().Add(-time.Millisecond))
	select {
	case <-c3.Done():
	default:
		t.Error("Done of an attempt past its deadline is not closed")
	}

	// Err notices the deadline without a timer, and Done asked for
	// afterwards is closed.
	c2 := newAttemptCtx(t.Context(), fc, fc.Now().Add(time.Second))
	fc.Advance(time.Second)
	if c2.Err() != context.DeadlineExceeded {
		t.Errorf("Err %v past the deadline", c2.Err())
	}
	<-c2.Done()
}

// TestPackQuery: PackQuery gives the bytes miekg/dns's Pack gives, for
// OPTs with local options, padding, other options, none, and messages
// with no OPT or a TSIG after it; the message is as it was.
func TestPackQuery(t *testing.T) {
	t.Parallel()
	local := func(code uint16, n int) *dns.EDNS0_LOCAL {
		return &dns.EDNS0_LOCAL{Code: code, Data: bytes.Repeat([]byte{byte(n)}, n)}
	}
	tsig := func() *dns.Msg {
		q := prepared("example.org.", dns.TypeA, local(65001, 3))
		q.Id = 0x1234 // the TSIG's original ID
		q.SetTsig("key.", dns.HmacSHA256, 300, 0)
		return q
	}
	tests := []struct {
		name string
		q    func() *dns.Msg
	}{
		{"no opt", func() *dns.Msg { return wireQuery("example.org.", dns.TypeA) }},
		{"no options", func() *dns.Msg { return prepared("example.org.", dns.TypeA) }},
		{"ecs, tags, trace", func() *dns.Msg {
			return prepared("example.org.", dns.TypeAAAA, local(dns.EDNS0SUBNET, 7), local(65001, 21), local(65002, 32))
		}},
		{"empty data", func() *dns.Msg { return prepared("example.org.", dns.TypeA, local(65001, 0)) }},
		{"padding", func() *dns.Msg {
			return prepared("example.org.", dns.TypeA, local(65001, 5), &dns.EDNS0_PADDING{Padding: make([]byte, 80)})
		}},
		{"another option", func() *dns.Msg {
			return prepared("example.org.", dns.TypeA, local(65001, 5), &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
		}},
		{"do bit and rcode", func() *dns.Msg {
			q := prepared("example.org.", dns.TypeDS, local(65001, 9))
			q.IsEdns0().SetDo()
			return q
		}},
		{"tsig last", tsig},
		{"flags and opcode", func() *dns.Msg {
			q := prepared("Example.ORG.", dns.TypeMX, local(65001, 2))
			q.Opcode, q.CheckingDisabled, q.AuthenticatedData, q.RecursionDesired, q.Zero = dns.OpcodeNotify, true, true, false, true
			q.Question[0].Qclass = dns.ClassCHAOS
			return q
		}},
		{"root name", func() *dns.Msg { return prepared(".", dns.TypeNS) }},
		{"escaped name", func() *dns.Msg { return prepared("a\\.b.example.org.", dns.TypeA, local(65001, 2)) }},
		{"extended rcode bits in the OPT", func() *dns.Msg {
			q := prepared("example.org.", dns.TypeA, local(65001, 2))
			q.IsEdns0().Hdr.Ttl |= 0x05 << 24
			return q
		}},
		{"compressed names", func() *dns.Msg {
			q := prepared("a.example.org.", dns.TypeA, local(65001, 4))
			q.Ns = []dns.RR{&dns.NS{Hdr: dns.RR_Header{Name: "example.org.", Rrtype: dns.TypeNS, Class: dns.ClassINET}, Ns: "ns.example.org."}}
			q.Compress = true
			return q
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			build := func() *dns.Msg {
				q := tt.q()
				q.Id = 0x1234
				return q
			}
			want, err := build().Pack()
			if err != nil {
				t.Fatal(err)
			}
			for _, buf := range [][]byte{nil, make([]byte, 0, 16), make([]byte, 4096)} {
				q := build()
				before := q.String()
				got, err := PackQuery(q, buf)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("buffer of %d: PackQuery\n%x\nPack\n%x", cap(buf), got, want)
				}
				if after := q.String(); after != before {
					t.Errorf("message changed:\n%s\nnow\n%s", before, after)
				}
			}
		})
	}
	// Options too long for an OPT fail as they do in miekg/dns.
	q := prepared("example.org.", dns.TypeA, local(65001, 40000), local(65002, 40000))
	if _, err := PackQuery(q, nil); err == nil {
		if _, perr := q.Pack(); perr == nil {
			t.Log("miekg/dns packs an OPT over 65535 bytes of options too")
		} else {
			t.Errorf("PackQuery packed what Pack refuses: %v", perr)
		}
	}
}

// BenchmarkPackQuery is PackQuery against miekg/dns's Pack for a query
// that carries ECS and tags.
func BenchmarkPackQuery(b *testing.B) {
	q := prepared("example.org.", dns.TypeA, &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: make([]byte, 7)},
		&dns.EDNS0_LOCAL{Code: 65001, Data: []byte("env=prod stage=canary")})
	buf := make([]byte, 512)
	b.Run("miekg", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			q.PackBuffer(buf)
		}
	})
	b.Run("PackQuery", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			PackQuery(q, buf)
		}
	})
}

// waiterCtx is a query's context whose pipeline.Waiter counts the times
// it is told the query waits.
type waiterCtx struct {
	context.Context
	told atomic.Int32
}

func (c *waiterCtx) Value(key any) any {
	if key == any(pipeline.WaiterKey) {
		return c
	}
	return c.Context.Value(key)
}

func (c *waiterCtx) Waits() { c.told.Add(1) }

// TestUDPWireTellsWaiter: an attempt over UDP waits on its own channel,
// not on Done, so it tells the query's listener itself that the query
// waits (pipeline.Waits): the UDP listener hands its reading on then.
func TestUDPWireTellsWaiter(t *testing.T) {
	t.Parallel()
	pc := wireListenUDP(t, "127.0.0.1")
	udpScript(t, pc, func(q *dns.Msg, send func([]byte)) {
		send(wirePack(new(dns.Msg).SetReply(q)))
	})
	u := NewUDP(wireAddr(pc.LocalAddr()), nil)
	t.Cleanup(func() { u.Close() })
	qctx := &waiterCtx{Context: t.Context()}
	ctx := newAttemptCtx(qctx, clockwork.NewRealClock(), time.Now().Add(30*time.Second))
	defer ctx.stop()
	q := prepared("wait.example.", dns.TypeA)
	if _, _, err := u.exchangeWire(ctx, q, packPrepared(q)); err != nil {
		t.Fatal(err)
	}
	if n := qctx.told.Load(); n != 1 {
		t.Errorf("the query's waiter was told %d times, want 1", n)
	}
}

// TestAttemptCtxDoneTellsWaiter: asking an attempt for its Done channel
// tells the query's waiter, which the parent's Done (not asked) would
// have; only the first time.
func TestAttemptCtxDoneTellsWaiter(t *testing.T) {
	t.Parallel()
	qctx := &waiterCtx{Context: t.Context()}
	fc := clockwork.NewFakeClock()
	ctx := newAttemptCtx(qctx, fc, fc.Now().Add(time.Second))
	defer ctx.stop()
	if n := qctx.told.Load(); n != 0 {
		t.Fatalf("told %d times before Done", n)
	}
	ctx.Done()
	ctx.Done()
	if n := qctx.told.Load(); n != 1 {
		t.Errorf("told %d times after two Done calls, want 1", n)
	}
}

// FuzzPackQuery checks PackQuery against miekg/dns's Pack for queries of
// the forward stage's shape, with any name, flags and local options.
func FuzzPackQuery(f *testing.F) {
	f.Add("example.org.", uint16(dns.TypeA), uint16(0x0100), uint32(0x8000), []byte("env=prod"), uint8(2))
	f.Add("a\\.b.", uint16(dns.TypeDS), uint16(0x7ff0), uint32(0x05008000), []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, name string, qtype, bits uint16, ttl uint32, data []byte, nopts uint8) {
		build := func() *dns.Msg {
			q := new(dns.Msg)
			q.Id = 0xbeef
			q.Opcode = int(bits>>11) & 0xF
			q.Response, q.Authoritative, q.Truncated = bits&(1<<15) != 0, bits&(1<<10) != 0, bits&(1<<9) != 0
			q.RecursionDesired, q.RecursionAvailable, q.Zero = bits&(1<<8) != 0, bits&(1<<7) != 0, bits&(1<<6) != 0
			q.AuthenticatedData, q.CheckingDisabled = bits&(1<<5) != 0, bits&(1<<4) != 0
			q.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
			opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: EDNSBufferSize, Ttl: ttl}}
			for i := range int(nopts % 4) {
				opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: 65001 + uint16(i), Data: data})
			}
			q.Extra = []dns.RR{opt}
			return q
		}
		want, werr := build().Pack()
		got, err := PackQuery(build(), nil)
		if werr != nil {
			return // miekg/dns refuses the name; PackQuery passes its error on
		}
		if err != nil {
			t.Fatalf("PackQuery: %v; miekg/dns packs it", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("PackQuery\n%x\nPack\n%x", got, want)
		}
	})
}
