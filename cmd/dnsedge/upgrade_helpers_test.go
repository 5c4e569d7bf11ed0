package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// buildVersioned builds dnsedge with version v (what version.bind
// answers) to path, replacing what is there the way a package manager
// does: a new file renamed over the old.
func buildVersioned(t *testing.T, path, v string) {
	t.Helper()
	tmp := path + ".new"
	out, err := exec.Command("go", "build", "-o", tmp, "-ldflags", "-X main.version="+v, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build %s: %v\n%s", v, err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// freePortBoth returns a port free on 127.0.0.1 for both UDP and TCP when
// asked (another process may take it before the test binds it).
func freePortBoth(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startBin runs "bin serve -config path" and waits for its start-up
// summary, like startServe. The process, and every process an upgrade
// started from it, is stopped at the end of the test.
func startBin(t *testing.T, bin, path string, env ...string) (*proc, <-chan struct{}) {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, "serve", "-config", path), addrs: make(map[string]string)}
	p.cmd.Env = append(append(os.Environ(), "XDG_STATE_HOME="+t.TempDir(), "STATE_DIRECTORY="), env...)
	// Its own process group, so that the processes upgrades start are
	// stopped with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Pipes of our own: the processes upgrades start write to them too,
	// and Wait must not wait for them to close.
	out, outw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errr, errw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = outw, errw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outw.Close()
	errw.Close()
	go io.Copy(&p.stderr, errr)
	pgid := p.cmd.Process.Pid
	exited := make(chan struct{})
	go func() { p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		// The processes of later upgrades are not our children.
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.OnceFunc(func() { close(ready) })
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stdout.WriteString(line + "\n")
			if m := listenLine.FindStringSubmatch(line); m != nil {
				if _, ok := p.addrs[m[1]]; !ok {
					p.addrs[m[1]] = m[2]
				}
			}
			if m := caLine.FindStringSubmatch(line); m != nil && p.ca == "" {
				p.ca = m[1]
			}
			p.mu.Unlock()
			if strings.HasPrefix(line, "upstream ") {
				once()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		t.Fatalf("dnsedge did not start:\n%s", p.stderr.String())
	}
	return p, exited
}

// runUpgrade runs "bin upgrade -control sock" and returns its exit code
// and output.
func runUpgrade(t *testing.T, bin, sock string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "upgrade", "-control", sock, "-timeout", "40s").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("dnsedge upgrade: %v\n%s", err, out)
	}
	return 0, string(out)
}

// versionBind asks version.bind (CH TXT) over a new connection of net
// ("udp" or "tcp") and returns the answer, "" on failure.
func versionBind(addr, network string) string {
	c := &dns.Client{Net: network, Timeout: time.Second}
	q := new(dns.Msg)
	q.SetQuestion("version.bind.", dns.TypeTXT)
	q.Question[0].Qclass = dns.ClassCHAOS
	m, _, err := c.Exchange(q, addr)
	if err != nil || len(m.Answer) != 1 {
		return ""
	}
	if txt, ok := m.Answer[0].(*dns.TXT); ok && len(txt.Txt) == 1 {
		return txt.Txt[0]
	}
	return ""
}

// load sends queries from workers over UDP and TCP, one at a time each,
// at most rate per second per worker, until stop, and counts the
// queries that got no answer.
type load struct {
	sent, answered, lost atomic.Int64
	stop                 chan struct{}
	wg                   sync.WaitGroup
	mu                   sync.Mutex
	errs                 []string
}

func startLoad(addr string, udpWorkers, tcpWorkers, rate int, names []string) *load {
	l := &load{stop: make(chan struct{})}
	worker := func(network string, seed int) {
		defer l.wg.Done()
		c := &dns.Client{Net: network, Timeout: 2 * time.Second}
		var conn *dns.Conn
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := seed; ; i++ {
			select {
			case <-l.stop:
				if conn != nil {
					conn.Close()
				}
				return
			case <-tick.C:
			}
			if conn == nil {
				var err error
				if conn, err = c.Dial(addr); err != nil {
					l.fail(fmt.Sprintf("%s dial: %v", network, err))
					continue
				}
			}
			q := new(dns.Msg)
			q.SetQuestion(names[i%len(names)], dns.TypeA)
			l.sent.Add(1)
			m, _, err := c.ExchangeWithConn(q, conn)
			if err != nil || m.Rcode != dns.RcodeSuccess {
				l.lost.Add(1)
				l.fail(fmt.Sprintf("%s %s: %v %v", network, q.Question[0].Name, err, m))
				conn.Close()
				conn = nil
				continue
			}
			l.answered.Add(1)
			if network == "udp" {
				// A new socket, a new source port: spread over the
				// listener's sockets.
				conn.Close()
				conn = nil
			}
		}
	}
	for i := range udpWorkers {
		l.wg.Add(1)
		go worker("udp", i)
	}
	for i := range tcpWorkers {
		l.wg.Add(1)
		go worker("tcp", 1000+i)
	}
	return l
}

func (l *load) fail(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, s)
	}
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("sent %d, answered %d, lost %d; first failures: %s", l.sent.Load(), l.answered.Load(), l.lost.Load(), strings.Join(l.errs, "; "))
}

// upgradeConfig is a configuration with UDP (sockets sockets) and TCP
// listeners on port, forwarding to upstream, with the control socket.
func upgradeConfig(port, sockets int, upstream, control, extra string) string {
	return fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:%d", sockets: %d}
  - {proto: tcp, address: "127.0.0.1:%d"}
%supstreams:
  - {name: up, url: "udp://%s"}
upgrade: {control: %q, drain: 5s, watch: 20s, ready_timeout: 15s}
log: {level: info}
`, port, sockets, port, extra, upstream, control)
}

func tempSocket(t *testing.T) string {
	// A unix socket path must be short: the test's temporary directory
	// may be too deep.
	dir, err := os.MkdirTemp("", "dnsedge-ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ctl.sock")
}

// notifySocket listens where a service manager would (NOTIFY_SOCKET) and
// collects the MAINPID= values and READY=1 messages it receives.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(filepath.Dir(tempSocket(t)), "notify")}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, strings.Fields(string(buf[:k]))...)
			n.mu.Unlock()
		}
	}()
	return n
}

// has reports whether msg ("READY=1", "MAINPID=42") was received.
func (n *notifySocket) has(msg string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		if m == msg {
			return true
		}
	}
	return false
}

// last returns the last MAINPID= value received.
func (n *notifySocket) last() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.msgs) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(n.msgs[i], "MAINPID="); ok {
			return v
		}
	}
	return ""
}
