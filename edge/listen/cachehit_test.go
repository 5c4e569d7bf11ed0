package listen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// fixedClock is a clock that moves only when told; safe for concurrent use.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixedClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestCachedRepliesShared serves the same cache entries to many concurrent
// queries through the real listeners (Finish, Truncate, pack), fresh at
// two ages and then stale: hits share records with each other and with the
// cache, so under -race it shows that nothing on the way out writes into
// them, and every reply must be, byte for byte but the ID, the reply a
// lone query got.
func TestCachedRepliesShared(t *testing.T) {
	t.Parallel()
	var queries []*dns.Msg
	for _, name := range []string{"www.example.org.", "WWW.Example.ORG.", "big.example.org."} {
		for _, rd := range []bool{true, false} {
			qs := []*dns.Msg{
				query(name, dns.TypeA),
				queryEDNS(name, dns.TypeA, 1232, false),
				queryEDNS(name, dns.TypeA, 4096, true),
				queryEDNS(name, dns.TypeA, 512, false),
			}
			for _, q := range qs {
				q.RecursionDesired = rd
				queries = append(queries, q)
			}
		}
	}
	for _, kind := range []string{"udp", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			clk := &fixedClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
			c, err := cache.New(cache.Config{Now: clk.Now}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			var down atomic.Bool
			h := pipeline.Chain(sharedUpstream(&down), c.Middleware())
			s := start(t, kind, testConfig(t, fam4, h))
			ask := func(q *dns.Msg, id uint16) ([]byte, error) {
				q = q.Copy()
				q.Id = id
				wire, err := q.Pack()
				if err != nil {
					return nil, err
				}
				return exchangeRaw(kind, s.Addr(), wire, 5*time.Second)
			}
			for _, phase := range []string{"age 0", "age 1", "stale"} {
				// Lone queries first: the first of each fills the cache
				// (or, stale, fails to refresh it), the second is a hit.
				want := make([][]byte, len(queries))
				for i, q := range queries {
					for range 2 {
						if want[i], err = ask(q, 0); err != nil {
							t.Fatalf("%s: lone query %d: %v", phase, i, err)
						}
					}
					checkCachedReply(t, kind, phase, q, want[i])
				}
				var wg sync.WaitGroup
				for g := range 8 {
					wg.Go(func() {
						for n := range 40 {
							i := (g*7 + n) % len(queries)
							id := uint16(g<<8 | n + 1)
							got, err := ask(queries[i], id)
							if err != nil {
								t.Errorf("%s: query %d: %v", phase, i, err)
								return
							}
							if len(got) != len(want[i]) || got[0] != byte(id>>8) || got[1] != byte(id) || string(got[2:]) != string(want[i][2:]) {
								t.Errorf("%s: query %d (ID %d) got\n%x\nwant\n%x", phase, i, id, got, want[i])
								return
							}
						}
					})
				}
				wg.Wait()
				switch phase {
				case "age 0":
					clk.Advance(time.Second)
				case "age 1":
					down.Store(true)
					clk.Advance(time.Hour)
				}
			}
		})
	}
}

// checkCachedReply checks what a lone query got over kind in phase: its
// own question, ID 0, RD as asked, TTLs of the phase, EDNS as the client
// asked with only the stale answer's EDE, the big answer truncated over
// UDP to the header, question and a bare OPT.
func checkCachedReply(t *testing.T, kind, phase string, q *dns.Msg, wire []byte) {
	t.Helper()
	r := new(dns.Msg)
	if err := r.Unpack(wire); err != nil {
		t.Fatalf("%s: unpack: %v", phase, err)
	}
	size := dns.MaxMsgSize
	qopt := q.IsEdns0()
	if kind == "udp" {
		size = udpSize(q)
	}
	var errs []error
	if r.Id != 0 || r.RecursionDesired != q.RecursionDesired || len(r.Question) != 1 || r.Question[0] != q.Question[0] {
		errs = append(errs, errors.New("header or question"))
	}
	big := q.Question[0].Name == "big.example.org."
	if !big && len(r.Answer) != 3 {
		errs = append(errs, errors.New("answer count"))
	}
	if len(wire) > size || big && r.Truncated != (size < 1500) {
		errs = append(errs, fmt.Errorf("%d bytes, TC %v; the client takes %d", len(wire), r.Truncated, size))
	}
	// The cache keeps an entry as long as its shortest TTL, and caps every
	// TTL to that.
	ttl := map[string]uint32{"age 0": 300, "age 1": 299, "stale": 30}[phase]
	if big && phase != "stale" {
		ttl += 3300
	}
	if len(r.Answer) > 0 && r.Answer[0].Header().Ttl != ttl {
		errs = append(errs, fmt.Errorf("TTL %d, want %d", r.Answer[0].Header().Ttl, ttl))
	}
	opt := r.IsEdns0()
	switch {
	case (opt == nil) != (qopt == nil):
		errs = append(errs, errors.New("EDNS does not follow the query"))
	case opt != nil && (opt.Do() != qopt.Do() || opt.UDPSize() != EDNSSize):
		errs = append(errs, errors.New("OPT is not the listener's"))
	case opt != nil && phase == "stale" && !r.Truncated && (len(opt.Option) != 1 || opt.Option[0].Option() != dns.EDNS0EDE):
		errs = append(errs, fmt.Errorf("stale OPT options %v, want EDE 3 only", opt.Option))
	case opt != nil && (phase != "stale" || r.Truncated) && len(opt.Option) != 0:
		errs = append(errs, fmt.Errorf("OPT options %v, want none", opt.Option))
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("%s: reply to %s (EDNS %v):\n%v\n%v", phase, q.Question[0].Name, qopt != nil, r, err)
	}
}

// sharedUpstream answers www and WWW.Example.ORG with a CNAME chain and an
// additional record, big.example.org with 80 addresses, EDNS queries with
// an OPT carrying an option meant for this hop only; it fails while down
// is set.
func sharedUpstream(down *atomic.Bool) pipeline.Handler {
	return pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if down.Load() {
			return nil, &pipeline.Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority, Err: pipeline.ErrUpstreamFailed}
		}
		q := req.Msg
		m := new(dns.Msg)
		m.SetReply(q)
		m.RecursionAvailable = true
		name := q.Question[0].Name
		switch name {
		case "big.example.org.": // over 512 bytes, and over 1232 unless compressed
			for i := range 80 {
				m.Answer = append(m.Answer, mustRR(fmt.Sprintf("%s 3600 IN A 192.0.2.%d", name, i)))
			}
		default:
			m.Answer = []dns.RR{
				mustRR(name + " 3600 IN CNAME web.example.org."),
				mustRR("web.example.org. 300 IN A 192.0.2.1"),
				mustRR("web.example.org. 300 IN A 192.0.2.2"),
			}
			m.Extra = []dns.RR{mustRR("ns.example.org. 300 IN A 192.0.2.53")}
		}
		if opt := q.IsEdns0(); opt != nil {
			m.SetEdns0(1232, opt.Do())
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_LOCAL{Code: 65001, Data: []byte("hop")}}
		}
		return m, nil
	})
}
