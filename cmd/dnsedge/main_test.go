package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

var dnsedgeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dnsedge-bin")
	if err != nil {
		panic(err)
	}
	dnsedgeBin = filepath.Join(dir, "dnsedge")
	out, err := exec.Command("go", "build", "-o", dnsedgeBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build dnsedge: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tool returns the path of an external client, skipping the test when it
// is missing unless E2E_REQUIRED=1.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		// Daemons live in sbin, which a non-login PATH may lack.
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		if os.Getenv("E2E_REQUIRED") == "1" {
			t.Fatalf("%s is required (E2E_REQUIRED=1) but not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		wantCode int
		want     []string // substrings of the output, each a problem with its line
	}{
		{"good", "listeners:\n  - {proto: udp, address: \"127.0.0.1:8053\"}\nupstreams:\n  - {name: a, url: \"udp://192.0.2.1\"}\n",
			0, []string{"ok (1 listeners, 1 upstreams, 1 groups)"}},
		{"warnings alone exit 0", `listeners:
  - {proto: udp, address: "127.0.0.1:8053"}
upstreams:
  - {name: a, url: "udp://192.0.2.1"}
groups:
  - {name: default, upstreams: [a]}
  - {name: spare, upstreams: [a]}
`, 0, []string{
			":2:5: warning: listeners[0]: udp 127.0.0.1:8053 has no tcp listener on the same address: truncated answers have nowhere to go",
			":7:12: warning: groups[1].name: group \"spare\" is unused: it is not the default group \"default\" and no policy rule routes to it",
			"ok (1 listeners, 1 upstreams, 2 groups)",
		}},
		{"every problem with its line", `listeners:
  - {proto: udp, address: "127.0.0.1:53"}
upstreams:
  - {name: a, url: "ftp://192.0.2.1"}
  - {name: b, url: "udp://127.0.0.1:53"}
groups:
  - {name: default, strategy: random, upstreams: [a, nope]}
`, 1, []string{
			":4:20: upstreams[0].url: unknown upstream scheme \"ftp\"",
			":5:20: upstreams[1].url: upstream 127.0.0.1:53 is dnsedge's own listen address",
			":7:31: groups[0].strategy: unknown strategy \"random\"",
			":7:54: groups[0].upstreams[1]: no upstream named \"nope\"",
		}},
		{"wrong types, unknown keys and other problems at once", `listeners:
  - {proto: udp, address: "127.0.0.1:8053", optional: maybe}
server:
  max_concurrent: lots
cache:
  max_ttl: 5 minutes
  bogus_key: 1
log: {level: loud}
`, 1, []string{
			":2:55: listeners[0].optional: expected true or false, not \"maybe\"",
			":4:19: server.max_concurrent: \"lots\" is not a whole number",
			":6:12: cache.max_ttl: \"5 minutes\" is not a duration (write it like 30s, 5m or 1h)",
			":7:3: unknown key \"bogus_key\" in cache (known: enabled, max_entries, ",
			":8:14: log.level: unknown log level \"loud\"",
		}},
		{"unknown key", "listeners: []\nlisten: 1\n", 1, []string{":2:1: unknown key \"listen\" at the top level (known: listeners, server, "}},
		{"zone file read, relative to the configuration", "listeners:\n  - {proto: udp, address: \"127.0.0.1:8053\"}\nupstreams:\n  - {name: a, url: \"udp://192.0.2.1\"}\nzones:\n  - {origin: corp.test., file: corp.zone}\n",
			1, []string{"corp.zone:3: "}},
		{"files serve would refuse, each at the key naming it", `listeners:
  - {proto: udp, address: "127.0.0.1:8053"}
  - {proto: dot, address: "127.0.0.1:8853"}
tls:
  cert_file: missing-cert.pem
  key_file: missing-key.pem
  client_ca: missing-ca.pem
  client_auth: require
upstreams:
  - {name: a, url: "udp://192.0.2.1"}
zones:
  - {origin: corp.test., file: corp.zone}
  - {origin: gone.test., file: gone.zone}
`, 1, []string{
			":5:14: tls.cert_file: read certificate: open missing-cert.pem: no such file",
			":7:14: tls.client_ca: read CA file: open missing-ca.pem: no such file",
			":12:32: zones[0].file: ", "corp.zone:3: ",
			":13:32: zones[1].file: ", "gone.zone: no such file",
		}},
		{"consul token and TLS files", `listeners:
  - {proto: udp, address: "127.0.0.1:8053"}
upstreams:
  - {name: a, url: "udp://192.0.2.1"}
consul:
  address: "127.0.0.1:8500"
  token_file: missing-token
  tls: {ca_file: missing-ca.pem}
`, 1, []string{
			":7:15: consul.token_file: open ", "missing-token: no such file",
			":8:8: consul.tls: ", "missing-ca.pem",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "dnsedge.yaml", tt.config)
			// A zone file beside the configuration, broken at line 3.
			zone := "$ORIGIN corp.test.\nwww 60 IN A 10.0.0.1\nbad 60 IN A not-an-address\n"
			if err := os.WriteFile(filepath.Join(filepath.Dir(path), "corp.zone"), []byte(zone), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(dnsedgeBin, "check", path).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// proc is a running dnsedge binary.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr syncBuf
	addrs  map[string]string // the first address of each proto
	ca     string            // the self-signed CA file, if any
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var (
	listenLine = regexp.MustCompile(`^listening on (udp|tcp|dot|doh|doq) (\S+)$`)
	caLine     = regexp.MustCompile(`^self-signed certificate authority: (\S+) `)
	// metricsLine gives the metrics endpoint's address as p.addr("metrics").
	metricsLine = regexp.MustCompile(`^metrics on http://(\S+)/metrics$`)
)

// startServe runs "dnsedge serve -config path" and waits for its start-up
// summary to name the listeners, which it lists before the upstreams. The
// state directory (self-signed certificates) is the test's own.
func startServe(t *testing.T, path string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(dnsedgeBin, "serve", "-config", path), addrs: make(map[string]string)}
	p.cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir(), "STATE_DIRECTORY=")
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.OnceFunc(func() { close(ready) })
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			if m := listenLine.FindStringSubmatch(line); m != nil {
				if _, ok := p.addrs[m[1]]; !ok {
					p.addrs[m[1]] = m[2]
				}
			}
			if m := caLine.FindStringSubmatch(line); m != nil {
				p.ca = m[1]
			}
			if m := metricsLine.FindStringSubmatch(line); m != nil {
				p.addrs["metrics"] = m[1]
			}
			p.mu.Unlock()
			if strings.HasPrefix(line, "upstream ") {
				once()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("dnsedge did not start:\n%s", p.stderr.String())
	}
	return p
}

func (p *proc) addr(proto string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[proto]
}

func hostPort(addr string) (string, string) {
	i := strings.LastIndex(addr, ":")
	return strings.Trim(addr[:i], "[]"), addr[i+1:]
}

const zone = `$ORIGIN test.example.
@    60 IN SOA ns hostmaster 1 3600 600 86400 30
www  60 IN A 192.0.2.10
new  60 IN A 192.0.2.11
`

func serveConfig(upstream string) string {
	return fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: "udp://%s"}
log:
  level: info
`, upstream)
}

// dig runs a real client against the running binary.
func dig(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestServeWithRealClients starts the binary and asks it with kdig and dig
// over UDP and TCP.
func TestServeWithRealClients(t *testing.T) {
	kdig, digBin := tool(t, "kdig"), tool(t, "dig")
	up := transporttest.StartFault(t, zone)
	p := startServe(t, writeFile(t, "dnsedge.yaml", serveConfig(up.AddrV4().String())))
	uh, uport := hostPort(p.addr("udp"))
	th, tport := hostPort(p.addr("tcp"))
	tests := []struct {
		name string
		bin  string
		args []string
	}{
		{"kdig udp", kdig, []string{"@" + uh, "-p", uport, "+notcp", "+time=3", "www.test.example", "A"}},
		{"kdig tcp", kdig, []string{"@" + th, "-p", tport, "+tcp", "+time=3", "www.test.example", "A"}},
		{"dig udp", digBin, []string{"@" + uh, "-p", uport, "+time=3", "+tries=1", "www.test.example", "A"}},
		{"dig tcp", digBin, []string{"@" + th, "-p", tport, "+tcp", "+time=3", "+tries=1", "www.test.example", "A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := dig(t, tt.bin, tt.args...)
			if !strings.Contains(out, "NOERROR") || !strings.Contains(out, "192.0.2.10") {
				t.Fatalf("unexpected answer:\n%s", out)
			}
		})
	}
}

// TestSIGHUPReload: a broken file changes nothing and is logged; a good
// one is applied without a restart.
func TestSIGHUPReload(t *testing.T) {
	kdig := tool(t, "kdig")
	up := transporttest.StartFault(t, zone)
	other := transporttest.StartFault(t, "moved.example. 60 IN A 192.0.2.77\n")
	path := writeFile(t, "dnsedge.yaml", serveConfig(up.AddrV4().String()))
	p := startServe(t, path)
	h, port := hostPort(p.addr("udp"))
	ask := func(name string) string {
		return dig(t, kdig, "@"+h, "-p", port, "+notcp", "+time=3", "+retry=0", name, "A")
	}
	if out := ask("www.test.example"); !strings.Contains(out, "192.0.2.10") {
		t.Fatalf("before reload:\n%s", out)
	}
	if err := os.WriteFile(path, []byte("listeners: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload failure logged", func() bool { return strings.Contains(p.stderr.String(), "reload failed") })
	if out := ask("www.test.example"); !strings.Contains(out, "192.0.2.10") {
		t.Fatalf("after a broken reload:\n%s", out)
	}
	if err := os.WriteFile(path, []byte(serveConfig(other.AddrV4().String())), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload logged", func() bool { return strings.Contains(p.stderr.String(), "configuration reloaded") })
	if out := ask("moved.example"); !strings.Contains(out, "192.0.2.77") {
		t.Fatalf("after reload:\n%s", out)
	}
}

// TestDiagnose probes an upstream whose IPv6 path is blackholed: the table
// shows the IPv4 paths ok and the IPv6 paths broken, and the exit code
// says something is broken.
func TestDiagnose(t *testing.T) {
	up := transporttest.StartFault(t, zone+transporttest.BigTXT("big.test.example.", 20))
	up.Set(transporttest.Faults{DropIPv6: true})
	boot := transporttest.StartBootstrap(t, "dns.test. 60 IN A 127.0.0.1\ndns.test. 60 IN AAAA ::1\n")
	cmd := exec.Command(dnsedgeBin, "diagnose", "-bootstrap", boot.Addr().String(), "-probes", "3", "-timeout", "300ms",
		"-name", "test.example", "-large", "big.test.example/TXT", fmt.Sprintf("udp://dns.test:%d", up.Port()))
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want 1\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	found := map[string]string{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 3 && (f[2] == "ipv4" || f[2] == "ipv6") {
			found[f[1]+"/"+f[2]] = l
		}
	}
	for _, k := range []string{"udp/ipv4", "tcp/ipv4"} {
		if l := found[k]; !strings.Contains(l, " ok") || !strings.Contains(l, "3/3") {
			t.Errorf("%s: %q, want ok with 3/3 answered\n%s", k, l, out)
		}
	}
	for _, k := range []string{"udp/ipv6", "tcp/ipv6"} {
		if l := found[k]; !strings.Contains(l, "BROKEN") {
			t.Errorf("%s: %q, want BROKEN\n%s", k, l, out)
		}
	}
	if !strings.Contains(found["udp/ipv4"], "bytes") {
		t.Errorf("large answer over UDP/IPv4 not reported as arrived: %q", found["udp/ipv4"])
	}
}

// TestDiagnoseLargeAnswer runs diagnose against an authoritative-only
// upstream, which refuses the default large probe (. DNSKEY): the table
// must say the large-answer test did not run and that -large is needed,
// without calling any path broken; with -large naming a big TXT RRset the
// large answer arrives on every path.
func TestDiagnoseLargeAnswer(t *testing.T) {
	up := transporttest.StartFault(t, zone+transporttest.BigTXT("big.test.example.", 20))
	tests := []struct {
		name      string
		args      []string
		wantLarge string // in every row's LARGE ANSWER column
		wantNote  bool   // the "large-answer test not run" line after the table
	}{
		{name: "default probe refused", wantLarge: "not tested", wantNote: true},
		{name: "big TXT", args: []string{"-large", "big.test.example/TXT"}, wantLarge: " bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"diagnose", "-probes", "2", "-timeout", "300ms"}, tt.args...)
			args = append(args, fmt.Sprintf("udp://127.0.0.1:%d", up.Port()), fmt.Sprintf("udp://[::1]:%d", up.Port()))
			out, err := exec.Command(dnsedgeBin, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("exit: %v, want 0\n%s", err, out)
			}
			rows := 0
			for _, l := range strings.Split(string(out), "\n") {
				if f := strings.Fields(l); len(f) < 3 || (f[2] != "ipv4" && f[2] != "ipv6") {
					continue
				}
				rows++
				if !strings.Contains(l, tt.wantLarge) || strings.Contains(l, "BROKEN") {
					t.Errorf("row %q, want %q and not broken\n%s", l, tt.wantLarge, out)
				}
				if refused := strings.Contains(l, "large-answer test not run: . DNSKEY answered REFUSED; use -large NAME/TYPE"); refused != tt.wantNote {
					t.Errorf("row %q: says the refused probe needs -large: %v, want %v", l, refused, tt.wantNote)
				}
			}
			if rows != 4 {
				t.Errorf("%d path rows, want 4\n%s", rows, out)
			}
			note := strings.Contains(string(out), "large-answer test not run on 4 of 4 paths")
			if note != tt.wantNote {
				t.Errorf("note after the table: %v, want %v\n%s", note, tt.wantNote, out)
			}
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSIGTERMDuringSlowReload: a reload held up issuing a certificate (an
// ACME server that accepts connections and never answers) does not hold up
// shutdown: SIGTERM exits within the shutdown deadline, not after the
// issuance timeout.
func TestSIGTERMDuringSlowReload(t *testing.T) {
	up := transporttest.StartFault(t, zone)
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		hang.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	path := writeFile(t, "dnsedge.yaml", serveConfig(up.AddrV4().String()))
	p := startServe(t, path)
	slow := fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
  - {proto: dot, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: "udp://%s"}
tls:
  acme:
    ca: "https://%s/directory"
    email: ops@dns.test
    domains: [dns.test]
    challenges: [tls-alpn-01]
    tls_alpn_address: "%s"
`, up.AddrV4(), hang.Addr(), freeAddr(t))
	if err := os.WriteFile(path, []byte(slow), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	defer func() {
		if t.Failed() {
			t.Log(p.stderr.String())
		}
	}()
	waitFor(t, "the reload to start issuing a certificate", func() bool {
		return strings.Contains(p.stderr.String(), "managing acme certificates")
	})
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("exit took %s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("dnsedge still running 10s after SIGTERM during a reload:\n%s", p.stderr.String())
	}
}

// freeAddr returns a loopback TCP address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
