package transporttest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	// lostTimeout is how long a client waits before calling a query lost.
	lostTimeout = 150 * time.Millisecond
	// answerTimeout is how long a client waits for a query expected to be
	// answered.
	answerTimeout = 2 * time.Second
)

// networks are the four client transports every fault is measured on.
var networks = []string{"udp4", "tcp4", "udp6", "tcp6"}

// newQuery builds a query; bufsize 0 sends no EDNS.
func newQuery(name string, qtype uint16, bufsize uint16) *dns.Msg {
	m := new(dns.Msg).SetQuestion(name, qtype)
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	return m
}

// exchange sends m over network ("udp4", "tcp6", ...) to the family's
// address of s.
func exchange(s *Server, network string, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	addr := s.AddrV4()
	if strings.HasSuffix(network, "6") {
		addr = s.AddrV6()
	}
	return exchangeAddr(network, addr, m, timeout)
}

func exchangeAddr(network string, addr netip.AddrPort, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: timeout}
	r, _, err := c.Exchange(m, addr.String())
	return r, err
}

// outcome summarises a reply: "lost" for a timeout, "RCODE/n" with the
// answer count, or "RCODE/tc" when truncated.
func outcome(r *dns.Msg, err error) string {
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "lost"
		}
		return "error: " + err.Error()
	}
	if r.Truncated {
		return dns.RcodeToString[r.Rcode] + "/tc"
	}
	return fmt.Sprintf("%s/%d", dns.RcodeToString[r.Rcode], len(r.Answer))
}

// timeoutFor waits briefly for replies expected lost and long for the rest.
func timeoutFor(want string) time.Duration {
	if want == "lost" {
		return lostTimeout
	}
	return answerTimeout
}

// waitFor polls cond until it holds or answerTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(answerTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ourGoroutines returns the stacks of live goroutines running this
// package's server code.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "transporttest.(*endpoint)") {
			out = append(out, g)
		}
	}
	return out
}

// fakeTB records Fatalf, Skipf and Cleanup. Methods it does not define
// panic through the nil embedded interface.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	skip     string
	cleanups []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skip = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	f.cleanups = append(f.cleanups, fn)
	f.mu.Unlock()
}

// run calls fn with f in a fresh goroutine, as the testing package runs a
// test, so Fatalf can end it.
func (f *fakeTB) run(fn func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
}

func (f *fakeTB) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// familyOf maps a client network such as "udp6" to a Count family.
func familyOf(network string) string {
	if strings.HasSuffix(network, "6") {
		return "ipv6"
	}
	return "ipv4"
}

func itoa(n uint32) string { return fmt.Sprint(n) }
