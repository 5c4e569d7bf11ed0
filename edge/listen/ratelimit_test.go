package listen

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func ptr[T any](v T) *T { return &v }

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	a := netip.MustParseAddr("198.51.100.7")
	sameNet := netip.MustParseAddr("198.51.100.200")
	other := netip.MustParseAddr("203.0.113.1")
	v6 := netip.MustParseAddr("2001:db8:0:1::1")
	v6same := netip.MustParseAddr("2001:db8:0:2::1") // same /56
	type step struct {
		advance time.Duration
		client  netip.Addr
		id      string
		udp     bool
		n       int
		want    map[verdict]int
	}
	tests := []struct {
		name  string
		cfg   RateLimit
		steps []step
	}{
		{name: "burst, then refused over TCP",
			cfg: RateLimit{QPS: 10, Burst: 5, Exempt: []string{}},
			steps: []step{
				{client: a, n: 8, want: map[verdict]int{allow: 5, limitRefuse: 3}},
			}},
		{name: "tc_share of the excess gets TC over UDP",
			cfg: RateLimit{QPS: 10, Burst: 4, TCShare: ptr(0.5), Exempt: []string{}},
			steps: []step{
				{client: a, udp: true, n: 14, want: map[verdict]int{allow: 4, limitTC: 5, limitRefuse: 5}},
			}},
		{name: "tc_share 0 refuses all",
			cfg: RateLimit{QPS: 10, Burst: 1, TCShare: ptr(0.0), Exempt: []string{}},
			steps: []step{
				{client: a, udp: true, n: 5, want: map[verdict]int{allow: 1, limitRefuse: 4}},
			}},
		{name: "tokens come back with time",
			cfg: RateLimit{QPS: 10, Burst: 2, Exempt: []string{}},
			steps: []step{
				{client: a, n: 3, want: map[verdict]int{allow: 2, limitRefuse: 1}},
				{advance: 100 * time.Millisecond, client: a, n: 2, want: map[verdict]int{allow: 1, limitRefuse: 1}},
				{advance: time.Second, client: a, n: 3, want: map[verdict]int{allow: 2, limitRefuse: 1}},
			}},
		{name: "one bucket per /24, another for another /24",
			cfg: RateLimit{QPS: 1, Burst: 2, Exempt: []string{}},
			steps: []step{
				{client: a, n: 2, want: map[verdict]int{allow: 2}},
				{client: sameNet, n: 1, want: map[verdict]int{limitRefuse: 1}},
				{client: other, n: 2, want: map[verdict]int{allow: 2}},
			}},
		{name: "one bucket per /56",
			cfg: RateLimit{QPS: 1, Burst: 2, Exempt: []string{}},
			steps: []step{
				{client: v6, n: 2, want: map[verdict]int{allow: 2}},
				{client: v6same, n: 1, want: map[verdict]int{limitRefuse: 1}},
			}},
		{name: "by client id",
			cfg: RateLimit{QPS: 1, Burst: 1, ByClientID: true, Exempt: []string{}},
			steps: []step{
				{client: a, id: "alice", n: 2, want: map[verdict]int{allow: 1, limitRefuse: 1}},
				{client: a, id: "bob", n: 1, want: map[verdict]int{allow: 1}},
				{client: a, n: 1, want: map[verdict]int{allow: 1}},
			}},
		{name: "client id ignored unless by_client_id",
			cfg: RateLimit{QPS: 1, Burst: 1, Exempt: []string{}},
			steps: []step{
				{client: a, id: "alice", n: 1, want: map[verdict]int{allow: 1}},
				{client: a, id: "bob", n: 1, want: map[verdict]int{limitRefuse: 1}},
			}},
		{name: "loopback exempt by default",
			cfg: RateLimit{QPS: 1, Burst: 1},
			steps: []step{
				{client: netip.MustParseAddr("127.0.0.1"), n: 50, want: map[verdict]int{allow: 50}},
				{client: a, n: 2, want: map[verdict]int{allow: 1, limitRefuse: 1}},
			}},
		{name: "disabled",
			cfg: RateLimit{QPS: 1, Burst: 1, Enabled: ptr(false)},
			steps: []step{
				{client: a, n: 50, want: map[verdict]int{allow: 50}},
			}},
		{name: "in-flight cap",
			cfg: RateLimit{QPS: 1000, Burst: 1000, MaxInFlight: 3, Exempt: []string{}},
			steps: []step{
				// The step does not end its queries: they stay in flight.
				{client: a, n: 5, want: map[verdict]int{allow: 3, limitRefuse: 2}},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := clockwork.NewFakeClock()
			l, err := NewRateLimiter(tt.cfg, clk.Now)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				got := map[verdict]int{}
				for range s.n {
					v, rc := l.admit(s.client, s.id, s.udp)
					got[v]++
					if v != allow && rc != nil {
						t.Errorf("verdict %d with a client to release", v)
					}
					if tt.name != "in-flight cap" {
						rc.done()
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(s.want) {
					t.Errorf("step %d: verdicts %v, want %v", i, got, s.want)
				}
			}
		})
	}
}

// TestRateLimiterBounded floods the limiter with more clients than it
// may track and checks its table stays within MaxClients.
func TestRateLimiterBounded(t *testing.T) {
	t.Parallel()
	clk := clockwork.NewFakeClock()
	l, err := NewRateLimiter(RateLimit{MaxClients: 640, IPv4Prefix: 32, Exempt: []string{}}, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		_, rc := l.admit(addr, "", true)
		rc.done()
		clk.Advance(time.Microsecond)
	}
	if n := l.clients(); n > 640 {
		t.Errorf("%d clients tracked, want at most 640", n)
	}
}

// TestRateLimiterSetConfig checks that a new configuration applies to the
// clients already tracked, and that a bad one changes nothing.
func TestRateLimiterSetConfig(t *testing.T) {
	t.Parallel()
	clk := clockwork.NewFakeClock()
	a := netip.MustParseAddr("198.51.100.7")
	l, err := NewRateLimiter(RateLimit{QPS: 1, Burst: 1, Exempt: []string{}}, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := l.admit(a, "", false); v != allow {
		t.Fatalf("first query %d", v)
	}
	if v, _ := l.admit(a, "", false); v != limitRefuse {
		t.Fatalf("second query %d, want refused", v)
	}
	if err := l.SetConfig(RateLimit{QPS: -1}); err == nil {
		t.Fatal("negative qps accepted")
	}
	if got := l.Config().QPS; got != 1 {
		t.Fatalf("bad config changed qps to %v", got)
	}
	if err := l.SetConfig(RateLimit{QPS: 100, Burst: 100, Exempt: []string{}}); err != nil {
		t.Fatal(err)
	}
	// The client's bucket takes the new rate when it is next seen.
	if v, _ := l.admit(a, "", false); v != limitRefuse {
		t.Fatalf("query right after the change %d, want refused (no tokens yet)", v)
	}
	clk.Advance(100 * time.Millisecond) // 10 tokens at the new rate
	allowed := 0
	for range 20 {
		if v, rc := l.admit(a, "", false); v == allow {
			allowed++
			rc.done()
		}
	}
	if allowed != 10 {
		t.Errorf("%d of 20 allowed after raising the rate, want 10", allowed)
	}
}

func TestRateLimitValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  RateLimit
		want string
	}{
		{"zero is the defaults", RateLimit{}, ""},
		{"negative qps", RateLimit{QPS: -1}, "qps: -1 must be a positive number"},
		{"prefix too long", RateLimit{IPv4Prefix: 33}, "ipv4_prefix: 33 is not a prefix length between 1 and 32"},
		{"v6 prefix", RateLimit{IPv6Prefix: 129}, "ipv6_prefix: 129 is not a prefix length between 1 and 128"},
		{"share", RateLimit{TCShare: ptr(1.5)}, "tc_share: 1.5 is not a share between 0 and 1"},
		{"exempt", RateLimit{Exempt: []string{"10.0.0.0/8", "nope"}}, `exempt[1]: "nope" is not a CIDR prefix (write it like 192.0.2.0/24)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ""
			if err := tt.cfg.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
		})
	}
}

// BenchmarkGuard measures what the listeners add per query: an ACL lookup
// in the private ranges, and the rate limiter's bucket of a client (not
// exempt), from every core at once.
func BenchmarkGuard(b *testing.B) {
	acl, err := NewACL(PrivateRanges)
	if err != nil {
		b.Fatal(err)
	}
	l, err := NewRateLimiter(RateLimit{QPS: 1e9, Burst: 1e9, Exempt: []string{}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
			if !acl.Allows(a) {
				b.Fatal("private address refused")
			}
			v, rc := l.admit(a, "", true)
			if v != allow {
				b.Fatal("limited")
			}
			rc.done()
		}
	})
}
