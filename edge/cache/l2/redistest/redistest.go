// Package redistest runs Debian's redis-server for tests: on a loopback
// port, with no persistence, an ACL user for dnsedge and the default user
// off, optionally over TLS. It is for tests only.
package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The ACL user every Server has.
const (
	User     = "dnsedge"
	Password = "l2-test-password"
)

// Options change how a Server runs.
type Options struct {
	// Args are added to redis-server's command line (TLS files, say).
	Args []string
	// TLS, when set, makes the port a TLS port; it is how Client
	// connects.
	TLS *tls.Config
}

// A Server is one redis-server process. Its methods must be called from
// the test goroutine.
type Server struct {
	t        testing.TB
	bin, dir string
	port     int
	opts     Options
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Start starts redis-server and waits until it answers, skipping the
// test when redis-server is not installed unless E2E_REQUIRED=1. The
// test's cleanup resumes and kills it.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/redis-server"); serr == nil {
			bin = "/usr/bin/redis-server"
		} else if os.Getenv("E2E_REQUIRED") == "1" {
			t.Fatal("redis-server is required (E2E_REQUIRED=1) but not installed")
		} else {
			t.Skip("redis-server not installed")
		}
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), opts: opts}
	t.Cleanup(s.Kill)
	// redis-server cannot report a port it picked: take a free one, and
	// take another if something else got it first.
	for attempt := 0; ; attempt++ {
		s.port = freePort(t)
		err := s.Restart()
		if err == nil {
			return s
		}
		if attempt == 2 {
			t.Fatal(err)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Addr returns host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Restart starts redis-server again on the same port (after Kill) and
// waits until it answers PING.
func (s *Server) Restart() error {
	port := []string{"--port", strconv.Itoa(s.port)}
	if s.opts.TLS != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port)}
	}
	args := append([]string{"--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--user", "default", "off",
		"--user", User, "on", ">" + Password, "~*", "&*", "+@all"}, port...)
	s.cmd = exec.Command(s.bin, append(args, s.opts.Args...)...)
	s.cmd.Stdout, s.cmd.Stderr = io.Discard, io.Discard
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		close(exited)
	}(s.cmd)
	c := s.Client()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("redis-server on %s exited: %w", s.Addr(), err)
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on %s: %w", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Client returns a client logged in as User.
func (s *Server) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr(), Username: User, Password: Password,
		MaxRetries: -1, Protocol: 2, TLSConfig: s.opts.TLS})
}

// Stop suspends redis-server (SIGSTOP): connections stay open, nothing
// is answered. Resume undoes it.
func (s *Server) Stop() { s.signal(syscall.SIGSTOP) }

// Resume resumes a stopped redis-server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	if s.cmd == nil {
		s.t.Fatal("redis-server is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal redis-server: %v", err)
	}
}

// Kill resumes redis-server, kills it (SIGKILL) and waits for it to
// exit. It does nothing when it is not running.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}
