package upgrade

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dnsedge/dnsedge/edge/listen"
)

// Server is what an upgrade needs of the running server (*edge.Server).
type Server interface {
	// Sockets returns duplicates of every socket it serves on.
	Sockets() ([]listen.Socket, error)
	// Drain stops reading and accepting and lets the connections
	// finish within timeout, returning at once.
	Drain(timeout time.Duration)
	// Resume serves again on the sockets of in.
	Resume(in *listen.Inherited) error
}

// Options of Start.
type Options struct {
	Config Config // defaults applied by Start
	Log    *slog.Logger
	// State writes the server's state for the new process; nil sends
	// none, and the new process starts cold.
	State func(io.Writer) error
	// Path is the executable to start; default the one this process
	// was started from, read again from disk (a binary replaced by a
	// package manager is the one started).
	Path string
	// Args are the arguments after the program name; default those of
	// this process.
	Args []string
	// Extra are sockets to hand over beside the server's (the control
	// socket); the caller keeps them.
	Extra []listen.Socket
	// Env are environment entries ("KEY=value") for the new process
	// beside this one's.
	Env []string
}

// A Handover is an upgrade whose new process serves: the old server is
// draining, and the duplicates of its sockets are kept until Commit, so
// that TakeBack can serve on them again.
type Handover struct {
	// Pid is the new process.
	Pid int

	proc   *os.Process
	ctl    net.Conn
	kept   []listen.Socket
	exited chan struct{}
	err    error // the new process's exit, once exited is closed
	once   sync.Once
	// quicForward: the new process reads the QUIC packets this one
	// forwards to it.
	quicForward bool
}

// QUICForwarder is what a Server that can forward the packets of new
// QUIC connections to the new process (listen.QUICRouting) implements.
type QUICForwarder interface {
	// ForwardQUIC starts forwarding, before Drain.
	ForwardQUIC()
}

// ErrFailed is the class of errors of an upgrade that did not happen:
// the old process serves on, unchanged.
var ErrFailed = errors.New("upgrade failed; the running process serves on")

// Start starts the new process with srv's sockets and waits until it
// serves. Then it drains srv and returns the handover. Any failure (the
// new process cannot start, reports an error, exits, or is not ready
// within ReadyTimeout) leaves srv serving as it was, kills what was
// started, and returns an error wrapping ErrFailed that says why.
func Start(srv Server, o Options) (*Handover, error) {
	o.Config = o.Config.WithDefaults()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrFailed, fmt.Sprintf(format, args...))
	}
	if o.Path == "" {
		p, err := os.Executable()
		if err != nil {
			return nil, fail("find the executable: %v", err)
		}
		o.Path = p
	}
	if o.Args == nil {
		o.Args = os.Args[1:]
	}
	socks, err := srv.Sockets()
	if err != nil {
		return nil, fail("%v", err)
	}
	h := &Handover{kept: socks, exited: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			h.closeKept()
		}
	}()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fail("control socket: %v", err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "upgrade control"), os.NewFile(uintptr(pair[1]), "upgrade control")
	defer theirs.Close()
	h.ctl, err = net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, fail("control socket: %v", err)
	}
	all := append(append([]listen.Socket(nil), socks...), o.Extra...)
	files := make([]*os.File, 0, len(all)+1)
	for _, s := range all {
		files = append(files, s.File)
	}
	files = append(files, theirs)
	env := append(os.Environ(), EnvFDs+"="+encodeFDs(all), EnvCtl+"="+strconv.Itoa(firstFD+len(all)))
	env = append(env, o.Env...)
	pid, err := spawn(o.Path, append([]string{os.Args[0]}, o.Args...), env, files)
	if err != nil {
		h.ctl.Close()
		return nil, fail("start %s: %v", o.Path, err)
	}
	h.Pid = pid
	h.proc, _ = os.FindProcess(pid) // never fails on Unix
	go func() {
		st, err := h.proc.Wait()
		if err == nil && !st.Success() {
			err = &exec.ExitError{ProcessState: st}
		}
		h.err = err
		close(h.exited)
	}()
	o.Log.Info("upgrade: new process started", "pid", h.Pid, "path", o.Path)
	ready := make(chan error, 1)
	go h.converse(o, ready)
	t := time.NewTimer(o.Config.ReadyTimeout)
	defer t.Stop()
	var why error
	select {
	case why = <-ready:
	case <-t.C:
		why = fmt.Errorf("not ready within %v", o.Config.ReadyTimeout)
	case <-h.exited:
		// The exit may have raced a last message; prefer what it said.
		select {
		case why = <-ready:
		case <-time.After(100 * time.Millisecond):
			why = fmt.Errorf("new process exited before it was ready: %v", h.err)
		}
	}
	if why != nil {
		h.proc.Kill()
		<-h.exited
		h.ctl.Close()
		return nil, fail("%v", why)
	}
	ok = true
	if f, can := srv.(QUICForwarder); can && h.quicForward {
		f.ForwardQUIC()
	}
	srv.Drain(o.Config.Drain)
	o.Log.Info("upgrade: new process serves; this one drains", "pid", h.Pid, "drain", o.Config.Drain.String(), "watch", o.Config.Watch.String())
	return h, nil
}

// spawn starts path with the standard descriptors of this process and
// files from descriptor 3 on. It passes the raw descriptors: os/exec
// would call File.Fd, which puts a socket in blocking mode, and with it
// the copy this process serves on, since both share one open file
// description.
func spawn(path string, argv, env []string, files []*os.File) (int, error) {
	fds := []uintptr{0, 1, 2}
	for _, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return 0, err
		}
		if err := rc.Control(func(fd uintptr) { fds = append(fds, fd) }); err != nil {
			return 0, err
		}
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env, Files: fds})
	// The descriptors must stay open until the fork has copied them.
	runtime.KeepAlive(files)
	return pid, err
}

// converse answers the new process on the control socket until it is
// ready (nil on ready) or reports a failure.
func (h *Handover) converse(o Options, ready chan<- error) {
	rd := bufio.NewReader(h.ctl)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("new process closed the control socket: %v", err)
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		switch verb {
		case "state":
			if err := h.sendState(o); err != nil {
				o.Log.Warn("upgrade: state not sent", "error", err.Error())
			}
		case "ready":
			h.quicForward = slices.Contains(strings.Fields(arg), "quic-forward")
			ready <- nil
			return
		case "failed":
			ready <- errors.New(arg)
			return
		default:
			ready <- fmt.Errorf("new process said %q on the control socket", verb)
			return
		}
	}
}

// sendState writes "state N" and N bytes of state, or "nostate REASON".
func (h *Handover) sendState(o Options) error {
	if o.State == nil {
		_, err := io.WriteString(h.ctl, "nostate this process carries no state\n")
		return err
	}
	var b bytes.Buffer
	if err := o.State(&b); err != nil {
		_, werr := fmt.Fprintf(h.ctl, "nostate %s\n", oneLine(err.Error()))
		return errors.Join(err, werr)
	}
	if _, err := fmt.Fprintf(h.ctl, "state %d\n", b.Len()); err != nil {
		return err
	}
	_, err := h.ctl.Write(b.Bytes())
	return err
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// Exited returns a channel closed when the new process exits.
func (h *Handover) Exited() <-chan struct{} { return h.exited }

// ExitErr returns how the new process exited, once Exited is closed.
func (h *Handover) ExitErr() error { return h.err }

// TakeBack serves srv again on the kept sockets, after the new process
// died within the watch window. The handover is over.
func (h *Handover) TakeBack(srv Server) error {
	// The QUIC forwarding pairs were the new process's ends; this
	// process reads its QUIC sockets itself again.
	var kept []listen.Socket
	for _, s := range h.kept {
		if listen.IsQUICPair(s) {
			s.File.Close()
			continue
		}
		kept = append(kept, s)
	}
	in := listen.NewInherited(kept)
	h.kept = nil
	err := srv.Resume(in)
	in.Close()
	h.ctl.Close()
	return err
}

// Commit ends the handover once the watch window has passed: the kept
// sockets are let go and the control socket closed, which tells the new
// process that this one no longer reads any socket (it then reads the
// QUIC ones). Close the server first.
func (h *Handover) Commit() {
	h.closeKept()
	h.ctl.Close()
}

func (h *Handover) closeKept() {
	h.once.Do(func() {
		for _, s := range h.kept {
			s.File.Close()
		}
	})
}
