package transporttest

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Bootstrap is a resolver for upstream hostnames in tests: it answers from
// a zone over UDP and TCP on 127.0.0.1. A test can make "dns.test." resolve
// to both 127.0.0.1 and ::1 with a chosen TTL, then change the answer live.
// Its methods are safe for concurrent use, except Set, which must be called
// from the test goroutine.
type Bootstrap struct {
	t     testing.TB
	ep    *endpoint
	zone  atomic.Pointer[zone]
	count atomic.Int64
}

// StartBootstrap starts a Bootstrap serving records (master file text, see
// the package documentation), for example
//
//	dns.test. 30 IN A    127.0.0.1
//	dns.test. 30 IN AAAA ::1
//
// The sockets are bound before it returns, so queries may be sent at once.
// A bad zone or a failed bind fails the test. It stops in t.Cleanup.
func StartBootstrap(t testing.TB, records string) *Bootstrap {
	t.Helper()
	z, err := parseZone(records)
	if err != nil {
		t.Fatalf("start bootstrap: %v", err)
	}
	ep, err := bind(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0))
	if err != nil {
		t.Fatalf("start bootstrap: %v", err)
	}
	b := &Bootstrap{t: t, ep: ep}
	b.zone.Store(z)
	ep.serve(func(_ context.Context, q *dns.Msg, tcp bool) []byte {
		b.count.Add(1)
		return finish(q, b.zone.Load().answer(q), tcp)
	})
	t.Cleanup(ep.close)
	return b
}

// Addr returns the address, shared by UDP and TCP.
func (b *Bootstrap) Addr() netip.AddrPort { return b.ep.addr() }

// Set replaces the zone; queries that arrive afterwards see the new
// records. A bad zone fails the test and keeps the old one.
func (b *Bootstrap) Set(records string) {
	b.t.Helper()
	z, err := parseZone(records)
	if err != nil {
		b.t.Fatalf("set bootstrap records: %v", err)
	}
	b.zone.Store(z)
}

// Count returns the queries received over UDP and TCP.
func (b *Bootstrap) Count() int64 { return b.count.Load() }
