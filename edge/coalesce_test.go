package edge_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestCoalescedMissesEndToEnd: 1000 clients asking the same uncached
// name at once over UDP cause exactly one query upstream, and all get
// the answer.
func TestCoalescedMissesEndToEnd(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	up.Set(transporttest.Faults{Delay: 300 * time.Millisecond}) // long enough for everyone to arrive
	e := startEdge(t, fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
health:
  initial_timeout: 2s
  max_timeout: 2s
  probe_interval: -1s  # count client queries only
cache:
  enabled: true
`, up.AddrV4()))
	up.ResetCounts()
	const n = 1000
	var wg sync.WaitGroup
	failures := make(chan string, n)
	for range n {
		wg.Go(func() {
			// A burst of 1000 datagrams can overflow a socket buffer on
			// the way: like a stub resolver, a client asks again after a
			// while (an answer by then comes from the cache).
			c := &dns.Client{Net: "udp", Timeout: time.Second}
			q := new(dns.Msg)
			q.SetQuestion("h3.test.example.", dns.TypeA)
			var (
				m   *dns.Msg
				err error
			)
			for range 3 {
				if m, _, err = c.Exchange(q, e.udp.String()); err == nil {
					break
				}
			}
			switch {
			case err != nil:
				failures <- err.Error()
			case m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1:
				failures <- m.String()
			}
		})
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Fatalf("a query failed: %s", f)
	}
	if got := up.Count("ipv4", "udp"); got != 1 {
		t.Fatalf("%d upstream queries for %d identical misses, want 1", got, n)
	}
}
