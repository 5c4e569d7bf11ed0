package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/listen"
)

// A binary upgrade hands every socket of the front to a new process
// (Sockets); once the new process serves, this one stops reading and
// accepting and lets its connections finish (Drain), and takes its
// sockets back if the new process dies before it is committed (Resume).
// The DoQ listeners keep their sockets until Close: the new process
// reads the QUIC sockets only once this one has exited. Meanwhile this
// one forwards it the packets that open connections and those of its
// connections (listen.QUICRouting), so new DoQ and HTTP/3 connections
// are the new process's from Drain on, and the DoQ listeners close their
// own connections as they go idle, the rest at the drain deadline
// (connDrainer), so that their clients move to the new process too (a
// new process that does not read what is forwarded gets the DoQ clients
// once this one exits, as it gets the new connections). A
// DoH listener drains its HTTP/3 side with the rest (GOAWAY); once
// closed, its socket forwards every packet to the new process.

// socketer is what a listener that can hand its sockets over implements.
type socketer interface {
	Sockets() ([]listen.Socket, error)
}

// drainer is what a listener that can stop taking new work while it
// finishes the old implements. Listeners without it keep serving.
type drainer interface {
	Drain(timeout time.Duration) error
}

// connDrainer is what a listener that serves on through Drain (its
// sockets stay this process's until Close) implements to close its
// connections as they go idle, within timeout, and to keep them again
// on Resume.
type connDrainer interface {
	DrainConns(timeout time.Duration) error
	StopDrainConns()
}

// Sockets returns duplicates of every socket of the front: listeners,
// the metrics endpoint, the admin and webhook listeners. The caller owns
// the files.
func (s *Server) Sockets() (_ []listen.Socket, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []listen.Socket
	defer func() {
		if err != nil {
			for _, so := range out {
				so.File.Close()
			}
		}
	}()
	for _, ll := range s.listeners {
		sk, ok := ll.l.(socketer)
		if !ok {
			return nil, fmt.Errorf("listener %s %s cannot hand its sockets over", ll.spec.Proto, ll.spec.Address)
		}
		socks, err := sk.Sockets()
		if err != nil {
			return nil, err
		}
		out = append(out, socks...)
	}
	add := func(spec string, ln net.Listener) error {
		f, err := ln.(interface{ File() (*os.File, error) }).File()
		if err != nil {
			return fmt.Errorf("duplicate %s: %w", spec, err)
		}
		out = append(out, listen.Socket{Network: "tcp", Addr: spec, File: f})
		return nil
	}
	if s.httpEnd != nil {
		if err := add(s.httpEnd.spec, s.httpEnd.ln); err != nil {
			return nil, err
		}
	}
	var errs []error
	each(s.pool, func(k any, e adminEndpoint) {
		if s.front.holds(k) {
			errs = append(errs, add(k.(adminKey).address, e.Listener()))
		}
	})
	each(s.pool, func(k any, e webhookEndpoint) {
		if s.front.holds(k) {
			errs = append(errs, add(k.(webhookKey).address, e.Listener()))
		}
	})
	return out, errors.Join(errs...)
}

// listenAdmin serves h on the inherited listener of addr, or binds it.
func (s *Server) listenAdmin(addr string, conf *tls.Config, h http.Handler) (*admin.Server, error) {
	ln, err := s.inherit.TakeListener("tcp", addr)
	if err != nil {
		return nil, err
	}
	if ln == nil {
		return admin.Listen(addr, conf, h, s.log)
	}
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	return admin.Serve(ln, conf, h, s.log), nil
}

// Drain stops reading and accepting on every listener that can drain,
// letting their connections finish within timeout, and closes the
// metrics and admin endpoints; the DoQ listeners keep their sockets
// until Close (ForwardQUIC hands the new connections to the new process)
// and, when ForwardQUIC was called, close their connections as they go
// idle, at the latest at timeout once their queries are answered (else
// they serve them until Close). It returns at once; Drained reports the
// end. Call Resume to serve again, or Close.
func (s *Server) Drain(timeout time.Duration) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	keep := s.pool.hold()
	kept := make(map[listenerKey]*liveListener)
	for k, ll := range s.listeners {
		d, ok := ll.l.(drainer)
		if !ok {
			take(keep, k, func() (*liveListener, func() error, error) { return ll, ll.close, nil })
			kept[k] = ll
			// Only while new QUIC connections go to the new process:
			// otherwise the clients would come back here.
			if cd, ok := ll.l.(connDrainer); ok && s.quicRouting.Forwarding() {
				s.drained.Go(func() {
					if err := cd.DrainConns(timeout); err != nil {
						s.log.Warn("drain", "proto", ll.spec.Proto, "address", ll.spec.Address, "error", err.Error())
					}
				})
			}
			continue
		}
		ll.once.Do(func() {
			s.drained.Go(func() {
				if err := d.Drain(timeout); err != nil {
					s.log.Warn("drain", "proto", ll.spec.Proto, "address", ll.spec.Address, "error", err.Error())
				}
			})
		})
	}
	old := s.front
	s.front, s.listeners, s.httpEnd = keep, kept, nil
	s.started.Store(false)
	go old.release() // the endpoints' shutdown takes up to two seconds
}

// ForwardQUIC makes the QUIC sockets forward, from now on, the packets of
// new connections and those of the new process's connections to the new
// process, until Resume or Close. Call it before Drain, once the new
// process serves and has said it reads what is forwarded.
func (s *Server) ForwardQUIC() { s.quicRouting.Start() }

// QUICNextMarker returns the QUIC connection ID marker of the process
// that replaces this one (Options.QUICMarker).
func (s *Server) QUICNextMarker() byte { return s.quicRouting.Next() }

// Drained returns a channel closed once the listeners Drain stopped are
// done, and the connections of those it left (DoQ) closed.
func (s *Server) Drained() <-chan struct{} {
	c := make(chan struct{})
	go func() { s.drained.Wait(); close(c) }()
	return c
}

// Resume serves again after Drain, on the sockets of in (the duplicates
// this process kept when it handed them over): the listeners Drain
// stopped are built anew on them, those it left serve on.
func (s *Server) Resume(in *listen.Inherited) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.quicRouting.Stop()
	s.mu.Lock()
	for _, ll := range s.listeners {
		if cd, ok := ll.l.(connDrainer); ok {
			cd.StopDrainConns()
		}
	}
	s.mu.Unlock()
	s.inherit = in
	defer func() { s.inherit = nil }()
	return s.serveFront(false)
}
