// Package transporttest provides DNS servers on loopback sockets for tests:
// a fault-injecting authoritative upstream served on 127.0.0.1 and ::1 with
// one port (Server), and a small bootstrap resolver (Bootstrap).
//
// Both serve a zone given as RFC 1035 master file text. Relative names need
// an $ORIGIN; a record without a TTL and no $TTL gets 3600; $INCLUDE is
// refused. The SOA, if any, sets the apex: names outside it are REFUSED.
// Without an SOA the zone covers the whole tree under a synthesized SOA at
// the root, so a few bare records make a valid zone. Answers are
// authoritative: NXDOMAIN for unknown names, NODATA with the SOA for names
// that exist with other types, in-zone CNAMEs followed; no wildcards.
//
// Over UDP replies are truncated with TC=1 to the client's EDNS payload
// size, 512 bytes without EDNS; EDNS is echoed with a 1232-byte payload and
// the client's DO bit. TCP uses RFC 7766 framing and answers pipelined
// queries concurrently.
package transporttest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BlackHoleLimit is the largest UDP reply over IPv6 that survives
// Faults.DropIPv6Large: the EDNS payload that fits the IPv6 minimum MTU of
// 1280 bytes (DNS Flag Day 2020).
const BlackHoleLimit = 1232

// bindAttempts bounds how often StartFault picks a fresh port when the one
// the IPv4 socket got is taken on ::1.
const bindAttempts = 10

// Faults says what a Server does wrong. The zero value answers every query
// correctly. They are read once per query, as it arrives, and applied in
// this order: Down, DropIPv6, DropPercent, DropPercentIPv6, DropUDPPercent,
// Delay and DelayIPv6, then Rcode or the zone builds the reply, then
// DropIPv6Large judges its size. A dropped query is still counted by
// Server.Count.
type Faults struct {
	// DropIPv6 drops every query that arrived over IPv6. Over TCP the
	// connection is accepted and the query read, then never answered, so
	// the client sees a timeout, not a refusal.
	DropIPv6 bool
	// DropPercent drops this percentage of queries on both families; 0 or
	// less drops none, 100 or more drops all. The draws come from a
	// generator seeded the same for every Server, so N queries that reach
	// the draw drop the same number every run, whatever their order.
	DropPercent int
	// DropPercentIPv6 drops this percentage of the queries that arrived
	// over IPv6 only: a lossy IPv6 path beside a clean IPv4 one.
	DropPercentIPv6 int
	// DropUDPPercent drops this percentage of the queries that arrived
	// over UDP, on both families; TCP is always answered. This is what
	// response rate limiting does to a resolver that sends much from one
	// address (RRL drops UDP responses and, with slip, tells clients to
	// come back over TCP, which it never limits).
	DropUDPPercent int
	// Delay waits this long before answering. Stop cuts the wait short.
	Delay time.Duration
	// DelayIPv6 adds this wait to queries that arrived over IPv6 only: a
	// slow IPv6 path (a tunnel, say) beside a fast IPv4 one.
	DelayIPv6 time.Duration
	// DropIPv6Large drops UDP replies over IPv6 longer than BlackHoleLimit
	// bytes, after truncation to the client's EDNS size: a path MTU black
	// hole. TCP and IPv4 are unaffected.
	DropIPv6Large bool
	// Rcode, when not zero, answers every query with this rcode and no
	// records instead of consulting the zone.
	Rcode int
	// Down answers nothing on any family or protocol. Sockets stay bound
	// and TCP connections are accepted; use Stop for refused connections.
	Down bool
	// TSIG, when set, signs the replies to signed queries (RFC 8945),
	// chained to the query's MAC, or does it wrong on purpose.
	TSIG *TSIGFault
}

// TSIGFault is how a Server signs replies. The query's own TSIG is not
// checked.
type TSIGFault struct {
	// Key and Secret (base64) sign the reply, with hmac-sha256. A
	// secret other than the client's is a reply signed with the wrong
	// key.
	Key, Secret string
	// Flip flips the RA bit of the signed reply: a reply changed in
	// transit.
	Flip bool
	// Unsigned sends the reply without a TSIG record.
	Unsigned bool
}

// sign returns out, the reply to q, signed as f says.
func (f *TSIGFault) sign(q *dns.Msg, out []byte) []byte {
	qt := q.IsTsig()
	if qt == nil || f.Unsigned || out == nil {
		return out
	}
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		return out
	}
	r.Compress = true
	r.SetTsig(dns.CanonicalName(f.Key), dns.HmacSHA256, 300, time.Now().Unix())
	wire, _, err := dns.TsigGenerate(r, f.Secret, qt.MAC, false)
	if err != nil {
		return out
	}
	if f.Flip {
		wire[3] ^= 0x80
	}
	return wire
}

// Server is an authoritative DNS server for one zone, reachable over UDP and
// TCP at 127.0.0.1 and ::1 on the same port, with injectable faults. Its
// methods are safe for concurrent use, except Restart, which must be called
// from the test goroutine.
type Server struct {
	t    testing.TB
	zone *zone
	port uint16

	mu     sync.Mutex
	faults Faults
	rng    *rand.Rand

	counts [2][2]atomic.Int64 // [family][proto], 0 = ipv4/udp, 1 = ipv6/tcp

	life sync.Mutex // serializes Stop and Restart; guards eps
	eps  []*endpoint
}

// StartFault starts a Server for zone (master file text, see the package
// documentation; BigTXTZone is an example). It binds UDP and TCP on
// 127.0.0.1 and on ::1 with the same port, picking a fresh port a few times
// when ::1 has it taken, so one hostname resolving to both loopback
// addresses reaches it on one port. The sockets are bound before StartFault
// returns, so queries may be sent at once.
//
// When ::1 cannot be bound StartFault skips the test, or fails it when the
// environment variable E2E_REQUIRED is 1. A bad zone fails the test. The
// server stops in t.Cleanup.
func StartFault(t testing.TB, zone string) *Server {
	t.Helper()
	z, err := parseZone(zone)
	if err != nil {
		t.Fatalf("start fault server: %v", err)
	}
	s := &Server{t: t, zone: z, rng: rand.New(rand.NewPCG(1, 2))}
	for range bindAttempts {
		eps, err := bindDual(0)
		if err == nil {
			s.eps = eps
			s.port = eps[0].addr().Port()
			break
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			continue
		}
		if errors.Is(err, errNoIPv6) {
			if os.Getenv("E2E_REQUIRED") == "1" {
				t.Fatalf("start fault server: %v", err)
			}
			t.Skipf("start fault server: %v", err)
		}
		t.Fatalf("start fault server: %v", err)
	}
	if s.eps == nil {
		t.Fatalf("start fault server: no port free on both 127.0.0.1 and ::1 after %d attempts", bindAttempts)
	}
	s.serve()
	t.Cleanup(s.Stop)
	return s
}

// errNoIPv6 marks a failure to bind ::1 for a reason other than the port
// being taken.
var errNoIPv6 = errors.New("ipv6 loopback unavailable")

// bindDual binds 127.0.0.1 then ::1 on port (0 = pick one on 127.0.0.1).
func bindDual(port uint16) ([]*endpoint, error) {
	e4, err := bind(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port))
	if err != nil {
		return nil, err
	}
	e6, err := bind(netip.AddrPortFrom(netip.IPv6Loopback(), e4.addr().Port()))
	if err != nil {
		e4.close()
		if !errors.Is(err, syscall.EADDRINUSE) {
			err = fmt.Errorf("%w: %w", errNoIPv6, err)
		}
		return nil, err
	}
	return []*endpoint{e4, e6}, nil
}

func (s *Server) serve() {
	for i, e := range s.eps {
		e.serve(func(ctx context.Context, q *dns.Msg, tcp bool) []byte {
			return s.handle(ctx, q, i == 1, tcp)
		})
	}
}

// handle applies the faults to one query and returns the reply, or nil.
func (s *Server) handle(ctx context.Context, q *dns.Msg, v6, tcp bool) []byte {
	s.counts[b2i(v6)][b2i(tcp)].Add(1)
	s.mu.Lock()
	f := s.faults
	drop := f.Down || (f.DropIPv6 && v6)
	if !drop && f.DropPercent > 0 {
		drop = s.rng.IntN(100) < f.DropPercent
	}
	if !drop && v6 && f.DropPercentIPv6 > 0 {
		drop = s.rng.IntN(100) < f.DropPercentIPv6
	}
	if !drop && !tcp && f.DropUDPPercent > 0 {
		drop = s.rng.IntN(100) < f.DropUDPPercent
	}
	s.mu.Unlock()
	if drop {
		return nil
	}
	if v6 {
		f.Delay += f.DelayIPv6
	}
	if f.Delay > 0 {
		timer := time.NewTimer(f.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil
		}
	}
	var m *dns.Msg
	if f.Rcode != 0 {
		m = new(dns.Msg)
		m.SetReply(q)
		m.Rcode = f.Rcode
	} else {
		m = s.zone.answer(q)
	}
	out := finish(q, m, tcp)
	if f.TSIG != nil {
		out = f.TSIG.sign(q, out)
	}
	if f.DropIPv6Large && v6 && !tcp && len(out) > BlackHoleLimit {
		return nil
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Set replaces the faults; queries that arrive afterwards see them.
func (s *Server) Set(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// Port returns the port shared by both families and protocols.
func (s *Server) Port() uint16 { return s.port }

// AddrV4 returns 127.0.0.1 with the server's port.
func (s *Server) AddrV4() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), s.port)
}

// AddrV6 returns ::1 with the server's port.
func (s *Server) AddrV6() netip.AddrPort {
	return netip.AddrPortFrom(netip.IPv6Loopback(), s.port)
}

// Stop closes every socket and connection and waits for in-flight queries,
// cutting delays short; afterwards UDP queries draw ICMP port unreachable
// and TCP connections are refused. It is idempotent. Counts and faults are
// kept.
func (s *Server) Stop() {
	s.life.Lock()
	defer s.life.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	for _, e := range s.eps {
		e.close()
	}
	s.eps = nil
}

// Restart stops the server if it runs and binds the same port again on
// both families, keeping the zone, faults and counts. The kernel may hand
// the freed port to another test's socket as an ephemeral one (a client's,
// gone within moments): Restart tries again for up to restartWait, then
// fails the test.
func (s *Server) Restart() {
	s.t.Helper()
	s.life.Lock()
	defer s.life.Unlock()
	s.stopLocked()
	eps, err := bindDual(s.port)
	for deadline := time.Now().Add(restartWait); errors.Is(err, syscall.EADDRINUSE) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		eps, err = bindDual(s.port)
	}
	if err != nil {
		s.t.Fatalf("restart fault server on port %d: %v", s.port, err)
	}
	s.eps = eps
	s.serve()
}

// restartWait bounds how long Restart waits for its port to be free.
const restartWait = 2 * time.Second

// Count returns the queries received, dropped or not, on family "ipv4" or
// "ipv6" over proto "udp" or "tcp". Other arguments panic, so a misspelling
// cannot pass as zero.
func (s *Server) Count(family, proto string) int64 {
	var f, p int
	switch family {
	case "ipv4":
	case "ipv6":
		f = 1
	default:
		panic(fmt.Sprintf("transporttest: unknown family %q", family))
	}
	switch proto {
	case "udp":
	case "tcp":
		p = 1
	default:
		panic(fmt.Sprintf("transporttest: unknown proto %q", proto))
	}
	return s.counts[f][p].Load()
}

// ResetCounts sets every count to zero.
func (s *Server) ResetCounts() {
	for f := range s.counts {
		for p := range s.counts[f] {
			s.counts[f][p].Store(0)
		}
	}
}
