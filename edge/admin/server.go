package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is one admin HTTP listener: it serves a handler over HTTP, or
// HTTPS when given a TLS configuration, with bounded header size and read
// times. It is safe for concurrent use; Close stops it.
type Server struct {
	srv  *http.Server
	addr net.Addr
	raw  net.Listener
	done chan struct{}
}

// Limits of every admin listener.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
	shutdownGrace     = 2 * time.Second
)

// Listen binds addr and serves h on it until Close. With conf non-nil the
// listener speaks TLS (conf's certificates and client authentication).
func Listen(addr string, conf *tls.Config, h http.Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen admin %s: %w", addr, err)
	}
	return Serve(ln, conf, h, log), nil
}

// Serve is Listen on a listener already bound (one inherited from the
// process this one replaces); it owns ln from then on.
func Serve(ln net.Listener, conf *tls.Config, h http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	raw := ln
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	s := &Server{
		srv: &http.Server{
			Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
			IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		addr: ln.Addr(),
		raw:  raw,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener stopped", "address", raw.Addr().String(), "error", err.Error())
		}
	}()
	return s
}

// Listener returns the bound listener, below TLS, for handing its socket
// over to the process that replaces this one.
func (s *Server) Listener() net.Listener { return s.raw }

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops the listener, giving requests in flight two seconds, and
// waits for it to end. It may be called more than once.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
