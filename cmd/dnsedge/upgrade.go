package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/edge/upgrade"
)

// upgradeCmd asks the running dnsedge to upgrade to the binary on disk,
// through the control socket of its configuration, and reports the
// outcome: 0 once the new process serves, 1 with the reason when the
// upgrade failed (the running process serves on).
func upgradeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file naming upgrade.control")
	control := fs.String("control", "", "control socket (overrides the configuration's upgrade.control)")
	timeout := fs.Duration("timeout", 0, "how long to wait for the outcome (default: the configuration's upgrade.ready_timeout and 10s)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: dnsedge upgrade [-config FILE] [-control SOCKET] [-timeout D]")
		return 2
	}
	wait := *timeout
	if *control == "" || wait == 0 {
		cfg, err := loadConfig(*path)
		if err != nil {
			fmt.Fprintf(stderr, "dnsedge: %v\n", err)
			return 1
		}
		if *control == "" {
			*control = cfg.Upgrade.Control
		}
		if wait == 0 {
			wait = cfg.Upgrade.WithDefaults().ReadyTimeout + 10*time.Second
		}
	}
	if *control == "" {
		fmt.Fprintln(stderr, "dnsedge: no control socket: set upgrade.control in the configuration (or send SIGUSR2 to the running process)")
		return 1
	}
	pid, err := upgrade.Ask(*control, wait)
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge: upgrade failed: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "upgraded: new process %s serves\n", pid)
	return 0
}

// upgrader runs the upgrades of a serving process, one at a time, from
// the signal loop: starting the new process, watching it for the watch
// window, taking the sockets back when it dies, or exiting once the
// window has passed.
type upgrader struct {
	srv *edge.Server
	log *slog.Logger
	cfg atomic.Pointer[edge.Config] // the configuration in force
	ctl *upgrade.Control            // nil without upgrade.control

	done    chan upgradeDone // the outcome of a running upgrade.Start
	running bool
	h       *upgrade.Handover // the new process being watched
	ctlDup  *listen.Socket    // the control socket kept for a take-back
	pid     atomic.Int64      // the new process of the last upgrade
}

type upgradeDone struct {
	h     *upgrade.Handover
	err   error
	reply chan<- error
	extra []listen.Socket
}

func (u *upgrader) newPid() int { return int(u.pid.Load()) }

// start begins an upgrade unless one is under way; reply, when not nil,
// receives the outcome.
func (u *upgrader) start(reply chan<- error) {
	if u.running || u.h != nil {
		if reply != nil {
			reply <- errors.New("an upgrade is under way")
		}
		u.log.Warn("upgrade: one is under way already")
		return
	}
	var extra []listen.Socket
	if u.ctl != nil {
		s, err := u.ctl.Socket()
		if err != nil {
			if reply != nil {
				reply <- err
			}
			return
		}
		extra = append(extra, s)
	}
	u.running = true
	cfg := u.cfg.Load()
	u.log.Info("upgrade: starting the new process")
	go func() {
		h, err := upgrade.Start(u.srv, upgrade.Options{
			Config: cfg.Upgrade, Log: u.log, State: stateWriter(u.srv), Extra: extra,
			Env: []string{upgrade.EnvQUICMarker + "=" + strconv.Itoa(int(u.srv.QUICNextMarker()))},
		})
		u.done <- upgradeDone{h: h, err: err, reply: reply, extra: extra}
	}()
}

// loop runs until the process is to exit and returns its exit code.
func (u *upgrader) loop(sigs <-chan os.Signal, hup chan<- struct{}) int {
	var (
		reqs   <-chan chan<- error
		watch  <-chan time.Time
		exited <-chan struct{}
	)
	if u.ctl != nil {
		reqs = u.ctl.Requests()
	}
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				select {
				case hup <- struct{}{}:
				default: // one is pending already
				}
			case syscall.SIGUSR2:
				u.start(nil)
			default:
				u.log.Info("shutting down", "signal", sig.String())
				u.settle()
				return 0
			}
		case reply := <-reqs:
			u.start(reply)
		case d := <-u.done:
			u.running = false
			if d.err != nil {
				for _, s := range d.extra {
					s.File.Close()
				}
				u.log.Error("upgrade failed", "error", d.err.Error())
				if d.reply != nil {
					d.reply <- d.err
				}
				continue
			}
			u.h = d.h
			u.pid.Store(int64(d.h.Pid))
			if len(d.extra) > 0 {
				u.ctlDup = &d.extra[0]
			}
			if d.reply != nil {
				d.reply <- nil
			}
			if u.ctl != nil {
				// The new process answers on the control socket now.
				u.ctl.Close()
				reqs = nil
			}
			if err := upgrade.NotifyMainPID(d.h.Pid); err != nil {
				u.log.Warn("notify the service manager", "error", err.Error())
			}
			watch = time.After(u.cfg.Load().Upgrade.WithDefaults().Watch)
			exited = d.h.Exited()
		case <-exited:
			u.log.Warn("upgrade: the new process exited within the watch window; taking the sockets back",
				"pid", u.h.Pid, "status", fmt.Sprint(u.h.ExitErr()))
			if err := u.h.TakeBack(u.srv); err != nil {
				u.log.Error("upgrade: taking the sockets back failed", "error", err.Error())
				return 1
			}
			u.h, watch, exited = nil, nil, nil
			if u.ctlDup != nil {
				in := listen.NewInherited([]listen.Socket{*u.ctlDup})
				ctl, err := upgrade.ListenControl(u.ctlDup.Addr, in, u.newPid)
				in.Close()
				u.ctlDup = nil
				if err != nil {
					u.log.Error("upgrade: control socket not taken back", "error", err.Error())
				} else {
					u.ctl, reqs = ctl, ctl.Requests()
				}
			}
			if err := upgrade.NotifyMainPID(os.Getpid()); err != nil {
				u.log.Warn("notify the service manager", "error", err.Error())
			}
		case <-watch:
			u.log.Info("upgrade: watch window over; waiting for the connections to finish, then exiting", "pid", u.h.Pid)
			<-u.srv.Drained()
			return 0
		}
	}
}

// settle waits for an upgrade being started to end, so that nothing is
// left half done: a new process that came up serves on (finish lets it
// read the QUIC sockets), one that failed is gone.
func (u *upgrader) settle() {
	if !u.running {
		return
	}
	d := <-u.done
	u.running = false
	if d.err != nil {
		for _, s := range d.extra {
			s.File.Close()
		}
		if d.reply != nil {
			d.reply <- d.err
		}
		return
	}
	u.h = d.h
	if len(d.extra) > 0 {
		u.ctlDup = &d.extra[0]
	}
	u.pid.Store(int64(d.h.Pid))
	if d.reply != nil {
		d.reply <- nil
	}
	u.log.Info("upgrade: the new process serves on", "pid", d.h.Pid)
	if err := upgrade.NotifyMainPID(d.h.Pid); err != nil {
		u.log.Warn("notify the service manager", "error", err.Error())
	}
}

// finish lets go of what the upgrade held, once the server is closed:
// the new process, if any, reads the QUIC sockets from then on.
func (u *upgrader) finish() {
	if u.h != nil {
		if u.ctl != nil {
			u.ctl.Close() // the socket file is the new process's now
		}
		u.h.Commit()
		if u.ctlDup != nil {
			u.ctlDup.File.Close()
		}
		return
	}
	if u.ctl != nil {
		u.ctl.Remove()
	}
}
