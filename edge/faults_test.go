package edge_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport"
	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
)

// TestPathFaults injects each IPv6 fault into an upstream reached by host
// name over both families and checks the promises dnsedge makes: no query
// fails, only the broken path's breaker opens, once it is open answers come
// at the IPv4 path's speed, and when IPv6 heals a trial closes the breaker.
func TestPathFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults transporttest.Faults
		// big mixes queries for a TXT answer larger than 1232 bytes in.
		big bool
		// fails: the fault makes the IPv6 path fail, so it must leave
		// the order: demoted by its failure rate, or its breaker open. A
		// path MTU black hole does not: dnsedge advertises 1232 bytes, so
		// the upstream truncates and the answer comes over TCP on the
		// same IPv6 path.
		fails bool
	}{
		{name: "IPv6 blackholed", faults: transporttest.Faults{DropIPv6: true}, fails: true},
		{name: "IPv6 loses 90 percent", faults: transporttest.Faults{DropPercentIPv6: 90}, fails: true},
		{name: "IPv6 slower than its timeout", faults: transporttest.Faults{DelayIPv6: 2 * time.Second}, fails: true},
		{name: "IPv6 path MTU black hole", faults: transporttest.Faults{DropIPv6Large: true}, big: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := transporttest.StartFault(t, upstreamZone)
			boot := transporttest.StartBootstrap(t, bothFamilies)
			e := startEdge(t, seedConfig(boot.Addr(), up.Port()))
			v4, v6 := pathOf(t, e, transport.IPv4), pathOf(t, e, transport.IPv6)
			up.Set(tt.faults)

			_, failures := loadMix(t, e, 1000, tt.big)
			if len(failures) > 0 {
				t.Fatalf("%d of 1000 queries failed, first: %s\nlogs:\n%s", len(failures), failures[0], tail(e.logs.String(), 20))
			}
			if s := v4.Health.Snapshot(); s.Transitions[transport.Open] != 0 {
				t.Fatalf("IPv4 path breaker opened %d times: %+v", s.Transitions[transport.Open], s)
			}
			s6 := v6.Health.Snapshot()
			if !tt.fails {
				if s6.Transitions[transport.Open] != 0 {
					t.Fatalf("IPv6 path breaker opened although the path works: %+v", s6)
				}
				if up.Count("ipv6", "tcp") == 0 {
					t.Fatalf("no truncated answer was retried over TCP on the IPv6 path")
				}
				return
			}
			// The load may be over before the IPv6 path was ever tried
			// (the measured IPv4 path goes first): the probes then find
			// it failing.
			waitUntil(t, "IPv6 path demoted or open", 10*time.Second, func() bool {
				s := v6.Health.Snapshot()
				return s.Demoted || s.State != transport.Closed
			})

			// With the IPv6 path out of the way, answers come at the IPv4
			// path's speed: no query waits for the IPv6 attempt delay.
			lat, failures := loadMix(t, e, 200, tt.big)
			if len(failures) > 0 {
				t.Fatalf("%d of 200 queries failed after the IPv6 path was demoted: %s", len(failures), failures[0])
			}
			if m := median(lat); m > 40*time.Millisecond {
				t.Fatalf("median latency with the IPv6 path demoted = %v, want the IPv4 path's level", m)
			}

			// IPv6 heals: the probes of the idle path see it answer, its
			// failure rate falls and it takes its place again.
			up.Set(transporttest.Faults{})
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			waitUntil(t, "IPv6 path promoted again after healing", 10*time.Second, func() bool {
				q := new(dns.Msg)
				q.SetQuestion("h1.test.example.", dns.TypeAAAA)
				if _, _, err := c.Exchange(q, e.udp.String()); err != nil {
					t.Fatalf("query while healing: %v", err)
				}
				s := v6.Health.Snapshot()
				return s.State == transport.Closed && !s.Demoted
			})
			if s := v4.Health.Snapshot(); s.Transitions[transport.Open] != 0 {
				t.Fatalf("IPv4 path breaker opened while IPv6 healed")
			}
		})
	}
}

// loadMix is load with, when big is set, every tenth query asking for the
// large TXT RRset instead.
func loadMix(t *testing.T, e *testEdge, n int, big bool) ([]time.Duration, []string) {
	t.Helper()
	if !big {
		return load(t, e.udp, n)
	}
	lat, failures := load(t, e.udp, n-n/10)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	for range n / 10 {
		q := new(dns.Msg)
		q.SetQuestion("big.test.example.", dns.TypeTXT)
		q.SetEdns0(4096, false)
		m, rtt, err := c.Exchange(q, e.udp.String())
		switch {
		case err != nil:
			failures = append(failures, err.Error())
		case m.Truncated:
			// A client told to retry over TCP gets it whole there.
			tc := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
			m, _, err = tc.Exchange(q, e.tcp.String())
			if err != nil || len(m.Answer) != 20 {
				failures = append(failures, fmt.Sprintf("big TXT over TCP: %v", err))
			}
		case len(m.Answer) != 20:
			failures = append(failures, fmt.Sprintf("big TXT: %d records", len(m.Answer)))
		default:
			lat = append(lat, rtt)
		}
	}
	return lat, failures
}
