package transporttest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestFaults(t *testing.T) {
	t.Parallel()
	all := func(want string) map[string]string {
		return map[string]string{"udp4": want, "tcp4": want, "udp6": want, "tcp6": want}
	}
	tests := []struct {
		name    string
		faults  Faults
		qname   string
		qtype   uint16
		bufsize uint16
		want    map[string]string // network → outcome
	}{
		{
			name:  "no faults",
			qname: "a.example.",
			qtype: dns.TypeA,
			want:  all("NOERROR/1"),
		},
		{
			name:   "DropIPv6 loses both v6 protocols only",
			faults: Faults{DropIPv6: true},
			qname:  "a.example.",
			qtype:  dns.TypeA,
			want:   map[string]string{"udp4": "NOERROR/1", "tcp4": "NOERROR/1", "udp6": "lost", "tcp6": "lost"},
		},
		{
			name:    "DropIPv6Large loses big UDP over v6 only",
			faults:  Faults{DropIPv6Large: true},
			qname:   BigTXTName,
			qtype:   dns.TypeTXT,
			bufsize: 4096,
			want:    map[string]string{"udp4": "NOERROR/20", "tcp4": "NOERROR/20", "udp6": "lost", "tcp6": "NOERROR/20"},
		},
		{
			name:    "DropIPv6Large passes small answers",
			faults:  Faults{DropIPv6Large: true},
			qname:   "a.example.",
			qtype:   dns.TypeA,
			bufsize: 4096,
			want:    all("NOERROR/1"),
		},
		{
			name:    "DropIPv6Large passes answers truncated to 1232",
			faults:  Faults{DropIPv6Large: true},
			qname:   BigTXTName,
			qtype:   dns.TypeTXT,
			bufsize: 1232,
			want:    map[string]string{"udp4": "NOERROR/tc", "tcp4": "NOERROR/20", "udp6": "NOERROR/tc", "tcp6": "NOERROR/20"},
		},
		{
			name:   "Rcode SERVFAIL",
			faults: Faults{Rcode: dns.RcodeServerFailure},
			qname:  "a.example.",
			qtype:  dns.TypeA,
			want:   all("SERVFAIL/0"),
		},
		{
			name:    "Rcode REFUSED with EDNS",
			faults:  Faults{Rcode: dns.RcodeRefused},
			qname:   "a.example.",
			qtype:   dns.TypeA,
			bufsize: 1232,
			want:    all("REFUSED/0"),
		},
		{
			name:   "Down loses everything",
			faults: Faults{Down: true},
			qname:  "a.example.",
			qtype:  dns.TypeA,
			want:   all("lost"),
		},
		{
			name:   "Down wins over Rcode",
			faults: Faults{Down: true, Rcode: dns.RcodeServerFailure},
			qname:  "a.example.",
			qtype:  dns.TypeA,
			want:   all("lost"),
		},
		{
			name:   "DropPercentIPv6 100 loses IPv6 only",
			faults: Faults{DropPercentIPv6: 100},
			qname:  "a.example.",
			qtype:  dns.TypeA,
			want:   map[string]string{"udp4": "NOERROR/1", "tcp4": "NOERROR/1", "udp6": "lost", "tcp6": "lost"},
		},
		{
			name:   "DelayIPv6 beyond the client's timeout loses IPv6 only",
			faults: Faults{DelayIPv6: time.Hour},
			qname:  "a.example.",
			qtype:  dns.TypeA,
			want:   map[string]string{"udp4": "NOERROR/1", "tcp4": "NOERROR/1", "udp6": "lost", "tcp6": "lost"},
		},
		{
			name:   "DropUDPPercent 100 loses UDP only",
			faults: Faults{DropUDPPercent: 100},
			qname:  "a.example.",
			qtype:  dns.TypeA,
			want:   map[string]string{"udp4": "lost", "tcp4": "NOERROR/1", "udp6": "lost", "tcp6": "NOERROR/1"},
		},
		{
			name:   "DropPercent 100 loses everything",
			faults: Faults{DropPercent: 100},
			qname:  "a.example.",
			qtype:  dns.TypeA,
			want:   all("lost"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := StartFault(t, BigTXTZone())
			s.Set(tt.faults)
			var wg sync.WaitGroup
			for _, network := range networks {
				wg.Go(func() {
					want := tt.want[network]
					r, err := exchange(s, network, newQuery(tt.qname, tt.qtype, tt.bufsize), timeoutFor(want))
					if got := outcome(r, err); got != want {
						t.Errorf("%s: got %s, want %s", network, got, want)
					}
				})
			}
			wg.Wait()
			for _, network := range networks {
				if got := s.Count(familyOf(network), network[:3]); got != 1 {
					t.Errorf("%s: count = %d, want 1", network, got)
				}
			}
		})
	}
}

func TestDropPercent(t *testing.T) {
	t.Parallel()
	const n = 200
	s := StartFault(t, BigTXTZone())
	s.Set(Faults{DropPercent: 50})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lost int
	)
	for range n {
		wg.Go(func() {
			r, err := exchange(s, "udp4", newQuery("a.example.", dns.TypeA, 0), time.Second)
			switch got := outcome(r, err); got {
			case "lost":
				mu.Lock()
				lost++
				mu.Unlock()
			case "NOERROR/1":
			default:
				t.Errorf("got %s, want NOERROR/1 or lost", got)
			}
		})
	}
	wg.Wait()
	if lost < n*30/100 || lost > n*70/100 {
		t.Errorf("lost %d of %d queries, want 30%%..70%%", lost, n)
	}
	if got := s.Count("ipv4", "udp"); got != n {
		t.Errorf("count = %d, want %d", got, n)
	}
}

// TestDropUDPPercent: about the share asked of UDP queries is lost, and
// TCP queries to the same server are all answered.
func TestDropUDPPercent(t *testing.T) {
	t.Parallel()
	const n = 200
	s := StartFault(t, BigTXTZone())
	s.Set(Faults{DropUDPPercent: 50})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lost = map[string]int{}
	)
	for i := range n {
		network := []string{"udp4", "udp6", "tcp4", "tcp6"}[i%4]
		wg.Go(func() {
			r, err := exchange(s, network, newQuery("a.example.", dns.TypeA, 0), time.Second)
			switch got := outcome(r, err); got {
			case "lost":
				mu.Lock()
				lost[network]++
				mu.Unlock()
			case "NOERROR/1":
			default:
				t.Errorf("%s: got %s, want NOERROR/1 or lost", network, got)
			}
		})
	}
	wg.Wait()
	if udp := lost["udp4"] + lost["udp6"]; udp < n/2*30/100 || udp > n/2*70/100 {
		t.Errorf("lost %d of %d UDP queries, want 30%%..70%%", udp, n/2)
	}
	if tcp := lost["tcp4"] + lost["tcp6"]; tcp != 0 {
		t.Errorf("lost %d of %d TCP queries, want none", tcp, n/2)
	}
	for _, network := range networks {
		if got := s.Count(familyOf(network), network[:3]); got != n/4 {
			t.Errorf("Count(%s, %s) = %d, want %d", familyOf(network), network[:3], got, n/4)
		}
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	const delay = 100 * time.Millisecond
	s := StartFault(t, BigTXTZone())
	s.Set(Faults{Delay: delay})
	for _, network := range []string{"udp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			start := time.Now()
			r, err := exchange(s, network, newQuery("a.example.", dns.TypeA, 0), answerTimeout)
			if got := outcome(r, err); got != "NOERROR/1" {
				t.Fatalf("got %s, want NOERROR/1", got)
			}
			if took := time.Since(start); took < delay {
				t.Errorf("answered after %v, want at least %v", took, delay)
			}
		})
	}
}

func TestStopCutsDelayShort(t *testing.T) {
	t.Parallel()
	s := StartFault(t, BigTXTZone())
	s.Set(Faults{Delay: time.Hour})
	done := make(chan struct{})
	go func() {
		defer close(done)
		exchange(s, "tcp4", newQuery("a.example.", dns.TypeA, 0), answerTimeout)
	}()
	waitFor(t, "the query to arrive", func() bool { return s.Count("ipv4", "tcp") == 1 })
	start := time.Now()
	s.Stop()
	if took := time.Since(start); took > answerTimeout {
		t.Errorf("Stop took %v with a delayed query in flight", took)
	}
	<-done
}

func TestTCPPipelining(t *testing.T) {
	t.Parallel()
	names := []string{"a.example.", "www.example.", "ns.example.", BigTXTName}
	tests := []struct {
		name  string
		delay time.Duration
	}{
		// Every pipelined query gets its own reply.
		{name: "replies match queries"},
		// A server that answered one query at a time would read only the
		// first while it waits out the delay.
		{name: "read while earlier queries wait", delay: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := StartFault(t, BigTXTZone())
			s.Set(Faults{Delay: tt.delay})
			c, err := dns.Dial("tcp6", s.AddrV6().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(answerTimeout))
			want := make(map[uint16]string)
			for _, name := range names {
				q := newQuery(name, dns.TypeA, 0)
				want[q.Id] = name
				if err := c.WriteMsg(q); err != nil {
					t.Fatal(err)
				}
			}
			if tt.delay > 0 {
				waitFor(t, "all pipelined queries to be read", func() bool {
					return s.Count("ipv6", "tcp") == int64(len(names))
				})
				return
			}
			for range names {
				r, err := c.ReadMsg()
				if err != nil {
					t.Fatal(err)
				}
				name, ok := want[r.Id]
				if !ok || !strings.EqualFold(r.Question[0].Name, name) {
					t.Errorf("reply id %d for %s matches no outstanding query", r.Id, r.Question[0].Name)
				}
				delete(want, r.Id)
			}
		})
	}
}

func TestRestart(t *testing.T) {
	t.Parallel()
	s := StartFault(t, BigTXTZone())
	port := s.Port()
	s.Set(Faults{Rcode: dns.RcodeServerFailure})
	s.Stop()
	for _, network := range networks {
		r, err := exchange(s, network, newQuery("a.example.", dns.TypeA, 0), answerTimeout)
		if got := outcome(r, err); !strings.Contains(got, "refused") {
			t.Errorf("%s after Stop: got %s, want connection refused", network, got)
		}
	}
	s.Stop() // idempotent
	s.Restart()
	if s.Port() != port {
		t.Errorf("port after Restart = %d, want %d", s.Port(), port)
	}
	for _, network := range networks {
		r, err := exchange(s, network, newQuery("a.example.", dns.TypeA, 0), answerTimeout)
		if got := outcome(r, err); got != "SERVFAIL/0" {
			t.Errorf("%s after Restart: got %s, want SERVFAIL/0 (faults kept)", network, got)
		}
	}
	s.Restart() // while running
	r, err := exchange(s, "udp6", newQuery("a.example.", dns.TypeA, 0), answerTimeout)
	if got := outcome(r, err); got != "SERVFAIL/0" {
		t.Errorf("after second Restart: got %s, want SERVFAIL/0", got)
	}
}

func TestCounts(t *testing.T) {
	t.Parallel()
	s := StartFault(t, BigTXTZone())
	for i, network := range networks {
		for range i + 1 {
			exchange(s, network, newQuery("a.example.", dns.TypeA, 0), answerTimeout)
		}
	}
	for i, network := range networks {
		if got, want := s.Count(familyOf(network), network[:3]), int64(i+1); got != want {
			t.Errorf("Count(%s, %s) = %d, want %d", familyOf(network), network[:3], got, want)
		}
	}
	s.ResetCounts()
	for _, network := range networks {
		if got := s.Count(familyOf(network), network[:3]); got != 0 {
			t.Errorf("Count(%s, %s) after ResetCounts = %d, want 0", familyOf(network), network[:3], got)
		}
	}
	for _, bad := range [][2]string{{"inet6", "udp"}, {"ipv4", "quic"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Count(%q, %q) did not panic", bad[0], bad[1])
				}
			}()
			s.Count(bad[0], bad[1])
		}()
	}
}

func TestStartFaultBadZone(t *testing.T) {
	t.Parallel()
	f := &fakeTB{}
	f.run(func(tb testing.TB) { StartFault(tb, "a.example. IN A not-an-address\n") })
	if !strings.Contains(f.fatal, "parse zone") {
		t.Errorf("fatal = %q, want a parse zone error", f.fatal)
	}
	if len(f.cleanups) != 0 {
		t.Errorf("%d cleanups registered for a server that never started", len(f.cleanups))
	}
}

// TestStopLeavesNoGoroutines is not parallel, so no other test's server
// runs while it looks at the goroutines.
func TestStopLeavesNoGoroutines(t *testing.T) {
	s := StartFault(t, BigTXTZone())
	c, err := dns.Dial("tcp4", s.AddrV4().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteMsg(newQuery("a.example.", dns.TypeA, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadMsg(); err != nil {
		t.Fatal(err)
	}
	s.Set(Faults{Delay: time.Hour})
	exchange(s, "udp6", newQuery("a.example.", dns.TypeA, 0), lostTimeout)
	b := StartBootstrap(t, "dns.test. 30 IN A 127.0.0.1\n")
	exchangeAddr("tcp4", b.Addr(), newQuery("dns.test.", dns.TypeA, 0), answerTimeout)
	s.Stop()
	b.ep.close()
	deadline := time.Now().Add(answerTimeout)
	for left := ourGoroutines(); len(left) > 0; left = ourGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("%d server goroutines left after Stop:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(time.Millisecond)
	}
}
