package profile

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/internal/leaktest"
	"github.com/miekg/dns"
)

// startResolver serves A and AAAA records for the names in addrs on a
// loopback UDP port; other names get NXDOMAIN, and "broken.test."
// SERVFAIL. It stops in t.Cleanup.
func startResolver(t *testing.T, addrs map[string][]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg).SetReply(q)
		name := strings.ToLower(q.Question[0].Name)
		ips, ok := addrs[name]
		switch {
		case name == "broken.test.":
			r.Rcode = dns.RcodeServerFailure
		case !ok:
			r.Rcode = dns.RcodeNameError
		}
		for _, ip := range ips {
			a, _ := netip.ParseAddr(ip)
			hdr := dns.RR_Header{Name: q.Question[0].Name, Class: dns.ClassINET, Ttl: 60}
			switch {
			case a.Is4() && q.Question[0].Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				r.Answer = append(r.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && q.Question[0].Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				r.Answer = append(r.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		w.WriteMsg(r)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

// dotBehaviour is how the test DoT server treats the query it read on
// its n-th connection (from 0): it writes what it returns (nothing when
// nil) and closes the connection when close is true.
type dotBehaviour func(n int, q []byte) (reply []byte, close bool)

// startDoT runs a TLS server with cert on a loopback port that reads
// length-prefixed queries and acts as b says. got receives every query.
func startDoT(t *testing.T, cert tls.Certificate, b dotBehaviour) (netip.AddrPort, <-chan []byte) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 8)
	var wg sync.WaitGroup
	var conns sync.Map
	var n atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			wg.Add(1)
			go func(c net.Conn, n int) {
				defer wg.Done()
				defer c.Close()
				for {
					var l [2]byte
					if _, err := io.ReadFull(c, l[:]); err != nil {
						return
					}
					q := make([]byte, binary.BigEndian.Uint16(l[:]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					got <- q
					reply, closeIt := b(n, q)
					if reply != nil {
						c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(reply))), reply...))
					}
					if closeIt {
						return
					}
				}
			}(c, int(n.Add(1)-1))
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		wg.Wait()
	})
	return netip.MustParseAddrPort(ln.Addr().String()), got
}

// answer replies with rcode; question false leaves the question out.
func answer(rcode int, question bool) dotBehaviour {
	return func(_ int, q []byte) ([]byte, bool) {
		m := new(dns.Msg)
		if err := m.Unpack(q); err != nil {
			return nil, true
		}
		r := new(dns.Msg).SetRcode(m, rcode)
		if rcode == dns.RcodeSuccess {
			r.Answer = append(r.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 60}, AAAA: net.ParseIP("2001:db8::1")})
		}
		if !question {
			r.Question = nil
		}
		b, _ := r.Pack()
		return b, false
	}
}

func TestAndroid(t *testing.T) {
	before := leaktest.Snapshot()
	t.Cleanup(func() { leaktest.Check(t, before, 5*time.Second) }) // after the servers' cleanups
	ca, other := newTestCA(t, "Test Root"), newTestCA(t, "Other Root")
	now := time.Now()
	good := ca.serverCert(t, []string{"dot.test"}, now.Add(-time.Hour), now.Add(time.Hour))
	expired := ca.serverCert(t, []string{"dot.test"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	dual := ca.serverCert(t, []string{"dual.test"}, now.Add(-time.Hour), now.Add(time.Hour))
	resolver := startResolver(t, map[string][]string{
		"dot.test.":   {"127.0.0.1"},
		"other.test.": {"127.0.0.1"},
		"dual.test.":  {"127.0.0.1", "::1"},
	})

	tests := []struct {
		name      string
		host      string
		cert      tls.Certificate
		roots     *x509.CertPool
		serve     dotBehaviour
		noServer  bool   // nothing listens on the port
		wantStep  string // the failing step; "" passes
		wantInAll string // in the failing step's detail, or the probe's on success
	}{
		{"answer", "dot.test", good, ca.pool(), answer(dns.RcodeSuccess, true), false, "", "NOERROR, 1 question, 1 answers"},
		{"refused with the question passes", "dot.test", good, ca.pool(), answer(dns.RcodeRefused, true), false, "", "REFUSED, 1 question, 0 answers"},
		{"nxdomain passes", "dot.test", good, ca.pool(), answer(dns.RcodeNameError, true), false, "", "NXDOMAIN"},
		{"refused without the question", "dot.test", good, ca.pool(), answer(dns.RcodeRefused, false), false, StepProbe, "the reply (REFUSED) has 0 questions; Android needs exactly 1"},
		{"closes the connection every time", "dot.test", good, ca.pool(), func(int, []byte) ([]byte, bool) { return nil, true }, false, StepProbe, "closed the connection before replying, 3 times"},
		{"closes once then answers", "dot.test", good, ca.pool(), func(n int, q []byte) ([]byte, bool) {
			if n == 0 {
				return nil, true
			}
			return answer(dns.RcodeSuccess, true)(n, q)
		}, false, "", "NOERROR"},
		{"reply with another id", "dot.test", good, ca.pool(), func(n int, q []byte) ([]byte, bool) {
			r, _ := answer(dns.RcodeSuccess, true)(n, q)
			r[0] ^= 0xff
			return r, false
		}, false, StepProbe, "not the query's"},
		{"short reply", "dot.test", good, ca.pool(), func(_ int, q []byte) ([]byte, bool) { return q[:5], false }, false, StepProbe, "shorter than a DNS header"},
		{"wrong host name", "other.test", good, ca.pool(), answer(dns.RcodeSuccess, true), false, StepTLS, "certificate is valid for dot.test, not other.test"},
		{"expired certificate", "dot.test", expired, ca.pool(), answer(dns.RcodeSuccess, true), false, StepTLS, "certificate has expired"},
		{"unknown authority", "dot.test", good, other.pool(), answer(dns.RcodeSuccess, true), false, StepTLS, "unknown authority"},
		{"closed port", "dot.test", good, ca.pool(), nil, true, StepConnect, "connection refused"},
		{"no such name", "nowhere.test", good, ca.pool(), nil, true, StepResolve, "no A or AAAA record"},
		{"resolver fails", "broken.test", good, ca.pool(), nil, true, StepResolve, "SERVFAIL"},
		{"one address of two fails", "dual.test", dual, ca.pool(), answer(dns.RcodeSuccess, true), false, StepConnect, "[::1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var port uint16
			var got <-chan []byte
			if tt.noServer {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				port = uint16(ln.Addr().(*net.TCPAddr).Port)
				ln.Close()
			} else {
				var ap netip.AddrPort
				ap, got = startDoT(t, tt.cert, tt.serve)
				port = ap.Port()
			}
			a := &Android{Host: tt.host, Port: port, Resolver: resolver, Roots: tt.roots, Timeout: 5 * time.Second}
			var steps []Step
			ok := a.Run(context.Background(), func(s Step) { steps = append(steps, s) })
			var failed *Step
			for i := range steps {
				if !steps[i].OK {
					failed = &steps[i]
					break
				}
			}
			if tt.wantStep == "" {
				if !ok || failed != nil {
					t.Fatalf("check failed: %+v", steps)
				}
				last := steps[len(steps)-1]
				if last.Name != StepProbe || !strings.Contains(last.Detail, tt.wantInAll) {
					t.Fatalf("last step %+v, want a probe saying %q", last, tt.wantInAll)
				}
				if len(steps) != 4 {
					t.Fatalf("%d steps, want resolve, connect, tls, probe: %+v", len(steps), steps)
				}
			} else {
				if ok || failed == nil {
					t.Fatalf("check passed: %+v", steps)
				}
				if failed.Name != tt.wantStep || !strings.Contains(failed.Detail+" "+failed.Addr.String(), tt.wantInAll) {
					t.Fatalf("failed at %s: %q, want %s saying %q", failed.Name, failed.Detail, tt.wantStep, tt.wantInAll)
				}
			}
			if got != nil && tt.wantStep != StepTLS && tt.wantStep != StepConnect {
				checkProbe(t, <-got)
			}
		})
	}
}

// checkProbe checks a query the server read against Android's probe.
func checkProbe(t *testing.T, wire []byte) {
	t.Helper()
	q := new(dns.Msg)
	if err := q.Unpack(wire); err != nil {
		t.Fatalf("the probe does not parse: %v", err)
	}
	if len(q.Question) != 1 || q.Question[0].Qtype != dns.TypeAAAA || q.Question[0].Qclass != dns.ClassINET || !q.RecursionDesired ||
		len(q.Answer)+len(q.Ns)+len(q.Extra) != 0 {
		t.Fatalf("probe %v is not Android's", q)
	}
	name := q.Question[0].Name
	prefix, ok := strings.CutSuffix(name, ProbeSuffix)
	if !ok || len(prefix) != 6 || strings.Trim(prefix, probeChars) != "" {
		t.Fatalf("probe name %q is not <6 safe characters>%s", name, ProbeSuffix)
	}
}

// TestAndroidSilentServer: a server that reads the probe and never
// answers fails the probe step when the check's context ends, here
// canceled by the server once it has the query, so no timeout is waited.
func TestAndroidSilentServer(t *testing.T) {
	ca := newTestCA(t, "Root")
	now := time.Now()
	ap, got := startDoT(t, ca.serverCert(t, []string{"dot.test"}, now.Add(-time.Hour), now.Add(time.Hour)), func(int, []byte) ([]byte, bool) { return nil, false })
	resolver := startResolver(t, map[string][]string{"dot.test.": {"127.0.0.1"}})
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { <-got; cancel(errors.New("the server read the probe")) }()
	defer cancel(nil)
	a := &Android{Host: "dot.test", Port: ap.Port(), Resolver: resolver, Roots: ca.pool(), Timeout: time.Minute}
	var last Step
	if a.Run(ctx, func(s Step) { last = s }) {
		t.Fatal("passed without a reply")
	}
	if last.Name != StepProbe || !strings.Contains(last.Detail, "no reply: the server read the probe") {
		t.Fatalf("last step %+v", last)
	}
}

// TestAndroidClock: certificates are verified at the time Now gives.
func TestAndroidClock(t *testing.T) {
	ca := newTestCA(t, "Root")
	now := time.Now()
	ap, _ := startDoT(t, ca.serverCert(t, []string{"dot.test"}, now.Add(-time.Hour), now.Add(time.Hour)), answer(dns.RcodeSuccess, true))
	resolver := startResolver(t, map[string][]string{"dot.test.": {"127.0.0.1"}})
	a := &Android{Host: "dot.test", Port: ap.Port(), Resolver: resolver, Roots: ca.pool(), Now: func() time.Time { return now.Add(2 * time.Hour) }}
	var last Step
	if a.Run(context.Background(), func(s Step) { last = s }) || last.Name != StepTLS || !strings.Contains(last.Detail, "expired") {
		t.Fatalf("two hours on: last step %+v", last)
	}
}

func TestAndroidValidate(t *testing.T) {
	tests := []struct{ host, want string }{
		{"dns.example", ""},
		{"dns.example.", ""},
		{"", "empty"},
		{"192.0.2.1", "an IP address"},
		{"2001:db8::1", "an IP address"},
		{"dns.example:853", "without port"},
		{"tls://dns.example", "without scheme or path"},
		{"dns..example", "not a host name"},
	}
	for _, tt := range tests {
		err := (&Android{Host: tt.host}).Validate()
		if tt.want == "" && err != nil || tt.want != "" && (!errors.Is(err, ErrHost) || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%q) = %v, want %q", tt.host, err, tt.want)
		}
	}
}

func TestJudge(t *testing.T) {
	header := func(id, flags, qd, an uint16) []byte {
		var b [12]byte
		binary.BigEndian.PutUint16(b[0:], id)
		binary.BigEndian.PutUint16(b[2:], flags)
		binary.BigEndian.PutUint16(b[4:], qd)
		binary.BigEndian.PutUint16(b[6:], an)
		return b[:]
	}
	tests := []struct {
		name  string
		reply []byte
		want  string // in the result or the error
		ok    bool
	}{
		{"header alone with one question", header(7, 0x8105, 1, 0), "REFUSED, 1 question, 0 answers", true},
		{"body not looked at", append(header(7, 0x8180, 1, 3), 0xff, 0xff), "NOERROR, 1 question, 3 answers", true},
		{"two questions", header(7, 0x8180, 2, 0), "has 2 questions", false},
		{"no question", header(7, 0x8182, 0, 0), "(SERVFAIL) has 0 questions", false},
		{"another id", header(8, 0x8180, 1, 0), "ID 8, not the query's 7", false},
		{"short", []byte{0, 7, 0x81}, "3-byte reply", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := judge(tt.reply, 7, "x")
			if tt.ok != (err == nil) || !strings.Contains(got+errString(err), tt.want) {
				t.Fatalf("judge = %q, %v; want ok %v saying %q", got, err, tt.ok, tt.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
