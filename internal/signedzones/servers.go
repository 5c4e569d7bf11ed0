package signedzones

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a program the test started on loopback; it is stopped by the
// test's cleanup.
type Server struct {
	// Addr is where it answers, 127.0.0.1:port (UDP and TCP).
	Addr string
	logs *syncBuf
}

// Logs returns what the server wrote so far.
func (s *Server) Logs() string { return s.logs.String() }

// Start builds the tree and serves it from named.
func Start(t testing.TB) (*Zones, *Server) {
	t.Helper()
	z := Build(t)
	return z, z.Serve(t)
}

// Serve runs named as the authoritative server for every zone of z, on a
// 127.0.0.1 port, and returns once it answers there. named cannot bind
// port 0 and report it, so a port another test took in the meantime is
// detected by asking, and a fresh one is tried.
func (z *Zones) Serve(t testing.TB) *Server {
	t.Helper()
	named := Tool(t, "named")
	var zones strings.Builder
	for _, o := range z.Origins {
		fmt.Fprintf(&zones, "zone %q { type primary; file %q; };\n", o, filepath.Join(z.Dir, o+"db"))
	}
	s := start(t, "named", func(dir string, port int) []string {
		conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
%[3]s`, dir, port, zones.String())
		write(t, filepath.Join(dir, "named.conf"), conf)
		return []string{named, "-g", "-c", filepath.Join(dir, "named.conf"), "-u", "root"}
	}, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess && m.Authoritative })
	// named serves what it could load and logs the rest, and it loads
	// zones one after another while already answering (SERVFAIL for a
	// zone not loaded yet): wait until every zone is there, at most 20
	// seconds in all.
	c := &dns.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for _, o := range z.Origins {
		for {
			q := new(dns.Msg)
			q.SetQuestion(o, dns.TypeSOA)
			m, _, err := c.Exchange(q, s.Addr)
			if err == nil && m.Rcode == dns.RcodeSuccess && m.Authoritative {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("named does not serve %s (%v, %v); its log:\n%s", o, err, m, s.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return s
}

// Unbound runs unbound on a 127.0.0.1 port as a validating resolver for
// test. with z's anchors, forwarding to upstream (named), in the
// validator's strict mode: the oracle the differential tests compare
// dnsedge with. It asks unbound-checkconf about its configuration first.
func (z *Zones) Unbound(t testing.TB, upstream string) *Server {
	t.Helper()
	unbound, check := Tool(t, "unbound"), Tool(t, "unbound-checkconf")
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		t.Fatal(err)
	}
	var anchors strings.Builder
	for _, a := range z.Anchors {
		fmt.Fprintf(&anchors, "\ttrust-anchor: %q\n", a)
	}
	return start(t, "unbound", func(dir string, p int) []string {
		conf := fmt.Sprintf(`server:
	directory: "%[1]s"
	chroot: ""
	username: ""
	pidfile: "%[1]s/unbound.pid"
	use-syslog: no
	logfile: ""
	verbosity: 1
	val-log-level: 2
	interface: 127.0.0.1
	port: %[2]d
	do-ip6: no
	so-reuseport: no
	num-threads: 1
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	module-config: "validator iterator"
	val-permissive-mode: no
	qname-minimisation: no
	aggressive-nsec: no
	ede: yes
	local-zone: "test." nodefault
%[3]sforward-zone:
	name: "test."
	forward-addr: %[4]s@%[5]s
`, dir, p, anchors.String(), host, port)
		path := filepath.Join(dir, "unbound.conf")
		write(t, path, conf)
		if out, err := exec.Command(check, path).CombinedOutput(); err != nil {
			t.Fatalf("unbound-checkconf: %v\n%s\n%s", err, out, conf)
		}
		return []string{unbound, "-d", "-c", path}
	}, func(*dns.Msg) bool { return true })
}

// start runs the command that args(dir, port) gives on a free port and
// waits until a SOA query for the parent gets an answer that ready
// accepts (unbound answers it SERVFAIL when its anchor is wrong), trying up to 5 ports, each for at most 5 seconds.
func start(t testing.TB, what string, args func(dir string, port int) []string, ready func(*dns.Msg) bool) *Server {
	t.Helper()
	var last string
	for range 5 {
		dir := t.TempDir()
		port := freePort(t)
		argv := args(dir, port)
		cmd := exec.Command(argv[0], argv[1:]...)
		logs := new(syncBuf)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", what, err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		q := new(dns.Msg)
		q.SetQuestion(Parent, dns.TypeSOA)
		c := &dns.Client{Timeout: 300 * time.Millisecond}
		ok := false
	wait:
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			select {
			case <-exited:
				break wait
			default:
			}
			if m, _, err := c.Exchange(q, addr); err == nil && ready(m) {
				ok = true
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if ok {
			t.Cleanup(stop)
			return &Server{Addr: addr, logs: logs}
		}
		stop()
		last = logs.String()
	}
	t.Fatalf("%s did not answer on any of 5 ports; its last log:\n%s", what, last)
	return nil
}

// freePort returns a loopback port that was free on UDP and TCP a moment
// ago, for servers that cannot bind port 0 and report it.
func freePort(t testing.TB) int {
	t.Helper()
	for range 10 {
		l, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.LocalAddr().(*net.UDPAddr).Port
		tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			tl.Close()
			return port
		}
	}
	t.Fatal("no loopback port free on both UDP and TCP in 10 tries")
	return 0
}

// syncBuf collects a process's output.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
