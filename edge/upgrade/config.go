// Package upgrade replaces a running dnsedge by a new binary without
// losing a query: the running process starts the executable found on
// disk, hands it every listening socket (the same sockets, so nothing the
// kernel queued is lost) and its state, and steps back once the new
// process serves; for a watch window it keeps duplicates of the sockets
// and takes them back if the new process dies.
//
// The new process finds what it inherited in two environment variables:
// DNSEDGE_UPGRADE_FDS lists its inherited descriptors as
// "fd=network address index" entries separated by ";" (listen.Socket
// keys), and DNSEDGE_UPGRADE_CTL names the descriptor of the control
// socket (a stream socketpair) it talks to the old process on;
// DNSEDGE_UPGRADE_QUIC_MARKER is the first byte of its QUIC connection
// IDs, which tells the old process which packets to forward to it.
package upgrade

import (
	"errors"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
)

// Config is the upgrade section of the configuration file.
type Config struct {
	// Drain bounds how long the old process serves the connections it
	// holds (TCP, DoT, DoH, DoQ) once the new one serves. Default 30s.
	Drain time.Duration `yaml:"drain"`
	// Watch is how long the old process keeps its sockets and takes
	// them back if the new one exits. Default 60s.
	Watch time.Duration `yaml:"watch"`
	// ReadyTimeout bounds the new process's start: configuration, state
	// and listeners. Default 30s.
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// Control is the path of a unix socket on which `dnsedge upgrade`
	// asks the running process to upgrade and reads the outcome; empty
	// means SIGUSR2 only.
	Control string `yaml:"control"`
}

// Defaults of Config.
const (
	DefaultDrain        = 30 * time.Second
	DefaultWatch        = 60 * time.Second
	DefaultReadyTimeout = 30 * time.Second
)

// WithDefaults returns c with its zero durations set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	if c.Watch == 0 {
		c.Watch = DefaultWatch
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	return c
}

// Validate reports every problem of c with its field path.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"drain", c.Drain}, {"watch", c.Watch}, {"ready_timeout", c.ReadyTimeout}} {
		if d.v < 0 {
			errs = append(errs, field.Errorf(d.name, "%s %v is negative", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}
