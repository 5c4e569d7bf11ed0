package consultest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Agent is a `consul agent -dev` started by a test, on 127.0.0.1, with
// every port it opens (HTTP, DNS, server RPC, Serf LAN and WAN, gRPC and
// gRPC TLS) moved to a free ephemeral one, so that tests run in parallel.
// The test's cleanup stops it. Stop and Start let a test take it away and
// bring it back on the same ports and data directory.
type Agent struct {
	t   testing.TB
	bin string
	// HTTPAddr is the HTTP API's address, "127.0.0.1:port".
	HTTPAddr string
	// Node is the agent's node name.
	Node  string
	ports map[string]int
	dir   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *lockedBuffer
}

// leaderWait bounds the wait for a started agent to elect itself leader
// (about 0.15 s when the machine is idle).
const leaderWait = 30 * time.Second

// Start builds (once) and starts an agent for t, and waits until it has
// a leader and its node is in the catalog. It is stopped when the test
// ends.
func Start(t testing.TB) *Agent {
	t.Helper()
	bin := Binary(t)
	a := &Agent{t: t, bin: bin, Node: "dnsedge-test", dir: t.TempDir(), ports: make(map[string]int)}
	for _, name := range []string{"http", "dns", "server", "serf-lan", "serf-wan", "grpc", "grpc-tls"} {
		a.ports[name] = freePort(t)
	}
	a.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ports["http"]))
	t.Cleanup(a.Stop)
	a.Start()
	return a
}

// Start starts the agent again after Stop, on the same ports and data
// directory, and waits for its leader. It fails the test when the agent
// does not come up.
func (a *Agent) Start() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		a.t.Fatal("consultest: agent already running")
	}
	args := []string{"agent", "-dev", "-node", a.Node,
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-data-dir", a.dir, "-log-level", "warn",
		"-http-port", strconv.Itoa(a.ports["http"]), "-dns-port", strconv.Itoa(a.ports["dns"]),
		"-server-port", strconv.Itoa(a.ports["server"]), "-serf-lan-port", strconv.Itoa(a.ports["serf-lan"]),
		"-serf-wan-port", strconv.Itoa(a.ports["serf-wan"]), "-grpc-port", strconv.Itoa(a.ports["grpc"]),
		"-grpc-tls-port", strconv.Itoa(a.ports["grpc-tls"]),
	}
	// Another test's socket may hold one of the agent's ports for a
	// moment (the kernel hands freed ports out again): the agent then
	// exits at once, and is started again, for up to about 3 s.
	for attempt := 1; ; attempt++ {
		cmd := exec.Command(a.bin, args...)
		a.out = new(lockedBuffer)
		cmd.Stdout, cmd.Stderr = a.out, a.out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			a.t.Fatalf("start consul: %v", err)
		}
		a.cmd, a.done = cmd, make(chan struct{})
		go func(done chan struct{}) { cmd.Wait(); close(done) }(a.done)
		err := a.waitReady(a.done)
		if err == nil {
			return
		}
		a.stopLocked()
		if attempt < 10 && strings.Contains(a.out.String(), "address already in use") {
			time.Sleep(300 * time.Millisecond)
			continue
		}
		a.t.Fatalf("consul agent did not come up: %v\n%s", err, tail(a.out.String(), 4000))
	}
}

// Stop stops the agent (SIGTERM, then SIGKILL after 5 s) and waits for
// it to exit. It may be called more than once.
func (a *Agent) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopLocked()
}

func (a *Agent) stopLocked() {
	if a.cmd == nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
	a.cmd = nil
}

// Log returns what the agent printed since it was last started.
func (a *Agent) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.out == nil {
		return ""
	}
	return a.out.String()
}

// waitReady polls the HTTP API until the agent has a leader and its node
// is registered, or the agent exits, or leaderWait passes.
func (a *Agent) waitReady(exited chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), leaderWait)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	get := func(path string, v any) bool {
		resp, err := c.Get("http://" + a.HTTPAddr + path)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var leader string
		var node map[string]any
		if get("/v1/status/leader", &leader) && leader != "" && get("/v1/catalog/node/"+a.Node, &node) && node != nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("consul exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// freePort returns a port that was free on 127.0.0.1 for both TCP and
// UDP (Serf uses both on one port).
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatal("consultest: no free port for TCP and UDP")
	return 0
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil // enough to diagnose; keep memory bounded
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
