package upgrade

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/dnsedge/dnsedge/edge/listen"
)

// A Child is this process as the new process of an upgrade: what it
// inherited, and the control socket to the old process.
type Child struct {
	// Inherited are the sockets the old process handed over.
	Inherited *listen.Inherited
	// QUICMarker is the marker of this process's QUIC connection IDs
	// the old process chose (edge.Options.QUICMarker).
	QUICMarker byte

	ctl  net.Conn
	rd   *bufio.Reader
	gate chan struct{}
	once sync.Once
}

// Inherit returns what this process inherited when the old process of an
// upgrade started it, nil when it was started otherwise. It clears the
// environment variables, so that a process started from this one does
// not read them.
func Inherit() (*Child, error) {
	marker, merr := strconv.ParseUint(os.Getenv(EnvQUICMarker), 10, 8)
	os.Unsetenv(EnvQUICMarker)
	socks, f, ok, err := fromEnv()
	if !ok || err != nil {
		return nil, err
	}
	if merr != nil {
		// An old process that forwards nothing: any marker will do.
		marker = 1
	}
	ctl, err := net.FileConn(f)
	f.Close()
	if err != nil {
		for _, s := range socks {
			s.File.Close()
		}
		return nil, fmt.Errorf("upgrade control socket: %w", err)
	}
	return &Child{Inherited: listen.NewInherited(socks), QUICMarker: byte(marker), ctl: ctl, rd: bufio.NewReader(ctl), gate: make(chan struct{})}, nil
}

// ErrNoState is returned by State when the old process sent no state.
var ErrNoState = errors.New("no state from the old process")

// State asks the old process for its state and hands the stream to read.
// It returns ErrNoState (wrapped, with the old process's reason) when
// there is none.
func (c *Child) State(read func(io.Reader) error) error {
	if _, err := io.WriteString(c.ctl, "state\n"); err != nil {
		return fmt.Errorf("ask for the state: %w", err)
	}
	line, err := c.rd.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read the state: %w", err)
	}
	verb, arg, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	switch verb {
	case "nostate":
		return fmt.Errorf("%w: %s", ErrNoState, arg)
	case "state":
	default:
		return fmt.Errorf("read the state: unexpected %q", verb)
	}
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("read the state: bad length %q", arg)
	}
	lr := io.LimitReader(c.rd, n)
	err = read(lr)
	if _, derr := io.Copy(io.Discard, lr); derr != nil && err == nil {
		err = derr
	}
	return err
}

// Ready tells the old process that this one serves; the old one then
// stops reading and accepting. From then on QUICGate closes when the old
// process lets go of its sockets (exits or commits).
func (c *Child) Ready() error {
	// "quic-forward": this process reads the QUIC packets the old one
	// forwards (listen.QUICRouting); an old process that does not know
	// the word ignores it.
	if _, err := io.WriteString(c.ctl, "ready quic-forward\n"); err != nil {
		return fmt.Errorf("tell the old process: %w", err)
	}
	go func() {
		io.Copy(io.Discard, c.rd) // until the old process closes it
		c.ctl.Close()
		c.once.Do(func() { close(c.gate) })
	}()
	return nil
}

// Fail tells the old process why this one will not serve; the old one
// serves on and reports err.
func (c *Child) Fail(err error) {
	fmt.Fprintf(c.ctl, "failed %s\n", oneLine(err.Error()))
	c.ctl.Close()
}

// QUICGate returns a channel closed once the old process has stopped
// reading its QUIC sockets.
func (c *Child) QUICGate() <-chan struct{} { return c.gate }
