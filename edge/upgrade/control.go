package upgrade

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/dnsedge/dnsedge/edge/listen"
)

// Control is the unix socket `dnsedge upgrade` asks the running process
// on: the client writes "upgrade", the server answers "ok PID" once the
// new process PID serves, or "error REASON". The socket is handed over to
// the new process with the others.
type Control struct {
	ln   *net.UnixListener
	path string
	reqs chan chan<- error
	pid  func() int
	done chan struct{}
}

// ListenControl serves the control socket at path, inherited in in when
// it is there, bound otherwise (a stale socket file is replaced).
// Requests come out of Requests: the receiver sends the outcome, nil or
// why the upgrade failed, on the channel it receives; pid then names the
// new process.
func ListenControl(path string, in *listen.Inherited, pid func() int) (*Control, error) {
	c := &Control{path: path, reqs: make(chan chan<- error), pid: pid, done: make(chan struct{})}
	ln, err := in.TakeListener("unix", path)
	if err != nil {
		return nil, err
	}
	if ln == nil {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if conn, err := net.Dial("unix", path); err == nil {
				conn.Close()
				return nil, fmt.Errorf("control socket %s: another process listens on it", path)
			}
			os.Remove(path)
		}
		if ln, err = net.Listen("unix", path); err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
	}
	c.ln = ln.(*net.UnixListener)
	// The socket file outlives this process: the new one serves on it.
	c.ln.SetUnlinkOnClose(false)
	go c.serve()
	return c, nil
}

// Requests returns the upgrade requests.
func (c *Control) Requests() <-chan chan<- error { return c.reqs }

// Socket returns a duplicate of the listening socket, to hand over.
func (c *Control) Socket() (listen.Socket, error) {
	f, err := c.ln.File()
	if err != nil {
		return listen.Socket{}, fmt.Errorf("duplicate the control socket: %w", err)
	}
	return listen.Socket{Network: "unix", Addr: c.path, File: f}, nil
}

// Close stops serving; the socket file stays for the process that took
// it over.
func (c *Control) Close() error {
	err := c.ln.Close()
	<-c.done
	return err
}

// Remove closes the control socket and removes its file, when this
// process stops for good.
func (c *Control) Remove() error {
	err := c.Close()
	return errors.Join(err, os.Remove(c.path))
}

func (c *Control) serve() {
	defer close(c.done)
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		go c.answer(conn)
	}
}

// requestTimeout bounds how long a client may take to send its request.
const requestTimeout = 5 * time.Second

func (c *Control) answer(conn net.Conn) {
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(requestTimeout))
	line, err := bufio.NewReader(io.LimitReader(conn, 64)).ReadString('\n')
	if err != nil {
		return
	}
	conn.SetReadDeadline(time.Time{})
	if strings.TrimSpace(line) != "upgrade" {
		fmt.Fprintf(conn, "error unknown request %q\n", strings.TrimSpace(line))
		return
	}
	reply := make(chan error, 1)
	select {
	case c.reqs <- reply:
	case <-c.done:
		return
	}
	if err := <-reply; err != nil {
		fmt.Fprintf(conn, "error %s\n", oneLine(err.Error()))
		return
	}
	fmt.Fprintf(conn, "ok %d\n", c.pid())
}

// Ask asks the process serving the control socket at path to upgrade and
// returns the new process's pid, or why the upgrade failed.
func Ask(path string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return "", fmt.Errorf("reach the running dnsedge: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, "upgrade\n"); err != nil {
		return "", fmt.Errorf("ask for the upgrade: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read the outcome: %w", err)
	}
	verb, arg, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	if verb != "ok" {
		return "", errors.New(arg)
	}
	return arg, nil
}
