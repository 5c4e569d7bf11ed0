package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/edge/upgrade"
)

func loadConfig(path string) (*edge.Config, error) {
	if path == "" {
		return edge.DefaultConfig()
	}
	return edge.LoadFile(path)
}

// serve runs the server until SIGINT or SIGTERM; SIGHUP reloads the
// configuration file (a bad file changes nothing and is logged); SIGUSR2,
// or `dnsedge upgrade` on the control socket, upgrades to the binary on
// disk (see upgrade.go).
func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (embedded default when empty)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Getpid() == 1 && os.Getenv(upgrade.EnvCtl) == "" {
		// PID 1 must outlive every upgrade: it stays a thin parent.
		return initProcess()
	}
	// The new process of an upgrade: the old one handed over its sockets.
	child, err := upgrade.Inherit()
	if err != nil {
		fmt.Fprintf(os.Stderr, "dnsedge: %v\n", err)
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "dnsedge: %v\n", err)
		if child != nil {
			child.Fail(err)
		}
		return 1
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return fail(err)
	}
	if os.Getenv("GOGC") == "" {
		// A bounded headroom over the live heap (see gctune.go).
		// GOGC overrides it.
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		go tuneGC(ctx)
	}
	log, level := edge.NewLogger(os.Stderr, cfg.Log)
	logWarnings(log, cfg)
	reread := func() (*edge.Config, error) { return loadConfig(*path) }
	opts := edge.Options{Logger: log, Level: level, Out: os.Stdout, Version: versionString(), Load: reread}
	if child != nil {
		opts.Inherited, opts.QUICGate, opts.QUICMarker = child.Inherited, child.QUICGate(), child.QUICMarker
	}
	srv, err := edge.New(cfg, opts)
	if err != nil {
		return fail(err)
	}
	if child != nil {
		if err := child.State(stateReader(srv)); err != nil {
			log.Info("starting without the old process's state", "reason", err.Error())
		}
	}
	// Signals are caught before the start-up summary is printed: a
	// supervisor that reloads as soon as it sees dnsedge listening must
	// not kill it with SIGHUP's default action.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2)
	if err := srv.Start(); err != nil {
		srv.Close()
		return fail(err)
	}
	u := &upgrader{srv: srv, log: log, done: make(chan upgradeDone, 1)}
	u.cfg.Store(cfg)
	if p := cfg.Upgrade.Control; p != "" {
		if u.ctl, err = upgrade.ListenControl(p, opts.Inherited, u.newPid); err != nil {
			srv.Close()
			return fail(err)
		}
	}
	if child != nil {
		child.Inherited.Close() // what the new configuration does not use
		if err := child.Ready(); err != nil {
			log.Error("upgrade: the old process is gone", "error", err.Error())
		}
	} else if err := upgrade.NotifyReady(); err != nil {
		log.Warn("notify the service manager", "error", err.Error())
	}
	// Reloads run beside the signal loop, one at a time, so that SIGTERM
	// during a slow reload (a certificate being issued) is seen at once:
	// Close makes the reload give up. SIGHUPs that arrive during a reload
	// are folded into one more.
	hup := make(chan struct{}, 1)
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for range hup {
			next, err := loadConfig(*path)
			if err == nil {
				err = srv.Reload(next)
			}
			if err != nil {
				log.Error("reload failed; the running configuration is unchanged", "error", err.Error())
				continue
			}
			u.cfg.Store(next)
			logWarnings(log, next)
		}
	}()
	code := u.loop(sigs, hup)
	close(hup)
	if err := srv.Close(); err != nil {
		log.Warn("close", "error", err.Error())
	}
	u.finish()
	<-reloaded
	return code
}

// check validates a configuration file and the files it names, and prints
// every problem and warning with its line and column, sorted by line; it
// exits 1 when there is any problem (warnings alone exit 0).
func check(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: dnsedge check FILE")
		return 2
	}
	cfg, err := edge.LoadFile(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ps := cfg.Warnings()
	ferr := cfg.CheckFiles()
	var ce *edge.ConfigError
	if errors.As(ferr, &ce) {
		ps = append(ps, ce.Problems...)
	} else if ferr != nil {
		ps = append(ps, edge.Problem{File: args[0], Msg: ferr.Error()})
	}
	slices.SortStableFunc(ps, func(a, b edge.Problem) int { return cmp.Or(a.Line-b.Line, a.Col-b.Col) })
	for _, p := range ps {
		fmt.Fprintln(stderr, p)
	}
	if ferr != nil {
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners, %d upstreams, %d groups)\n", args[0], len(cfg.Listeners), len(cfg.Upstreams), len(cfg.Groups))
	return 0
}

// logWarnings logs what is allowed in cfg but probably not meant.
func logWarnings(log *slog.Logger, cfg *edge.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("configuration", "warning", w.String())
	}
}
