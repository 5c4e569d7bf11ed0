package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dnsedge/dnsedge/edge"
)

func loadConfig(path string) (*edge.Config, error) {
	if path == "" {
		return edge.DefaultConfig()
	}
	return edge.LoadFile(path)
}

// serve runs the server until SIGINT or SIGTERM; SIGHUP reloads the
// configuration file (a bad file changes nothing and is logged).
func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (embedded default when empty)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dnsedge: %v\n", err)
		return 1
	}
	if os.Getenv("GOGC") == "" {
		// Fewer, larger collections while the heap is small (see
		// gctune.go). GOGC overrides it.
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		go tuneGC(ctx)
	}
	log, level := edge.NewLogger(os.Stderr, cfg.Log)
	srv, err := edge.New(cfg, edge.Options{Logger: log, Level: level, Out: os.Stdout})
	if err != nil {
		fmt.Fprintf(os.Stderr, "dnsedge: %v\n", err)
		return 1
	}
	// Signals are caught before the start-up summary is printed: a
	// supervisor that reloads as soon as it sees dnsedge listening must
	// not kill it with SIGHUP's default action.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if err := srv.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "dnsedge: %v\n", err)
		srv.Close()
		return 1
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
			}
		}
	}()
	for sig := range sigs {
		if sig != syscall.SIGHUP {
			log.Info("shutting down", "signal", sig.String())
			break
		}
		select {
		case hup <- struct{}{}:
		default: // one is pending already
		}
	}
	close(hup)
	if err := srv.Close(); err != nil {
		log.Warn("close", "error", err.Error())
	}
	<-reloaded
	return 0
}

// check validates a configuration file and prints every problem with its
// line; it exits 1 when there is any.
func check(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: dnsedge check FILE")
		return 2
	}
	cfg, err := edge.LoadFile(args[0])
	if err == nil {
		err = cfg.CheckFiles()
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners, %d upstreams, %d groups)\n", args[0], len(cfg.Listeners), len(cfg.Upstreams), len(cfg.Groups))
	return 0
}
