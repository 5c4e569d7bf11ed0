package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	edgetls "github.com/dnsedge/dnsedge/tls"
)

// The front of a server is what clients connect to: its listeners, their
// certificate sources and the HTTP endpoint. Unlike a generation's parts,
// the front of a configuration is let go the moment the next one is
// committed: a listener the new file drops stops at once, rather than
// serving the new pipeline until the old generation retires.

// listenerKey identifies a listener across reloads: its proto and address,
// and the settings a running listener cannot change: path, http3, h2c,
// server name, padding, and the client certificate policy of its tls
// section. A listener whose key changes is replaced. Its certificate is
// not part of the key: a running listener takes a new one at its next
// handshake.
type listenerKey struct {
	proto, address, path, serverName string
	http3, h2c, padding, requireTSIG bool
	clientAuth, clientCA             string
	acl                              string // the acl entries, "-" for none
}

func (c *Config) listenerKey(l ListenerSpec) listenerKey {
	k := listenerKey{proto: l.Proto, address: l.Address, path: l.Path, serverName: l.ServerName,
		http3: l.HTTP3, h2c: l.H2C, padding: l.Padding == nil || *l.Padding, acl: "-",
		requireTSIG: l.TSIG == TSIGRequired}
	if l.ACL != nil {
		k.acl = strings.Join(l.ACL, ",")
	}
	if t := listenerTLS(c, l); t != nil {
		k.clientAuth, k.clientCA = string(t.ClientAuth), t.ClientCA
	}
	return k
}

// liveListener is a bound listener in the pool.
type liveListener struct {
	l    listener
	spec ListenerSpec
	// certs is the source the listener's handshakes read; nil for
	// cleartext listeners.
	certs *atomic.Pointer[edgetls.Certs]
	once  sync.Once
}

func (ll *liveListener) close() error {
	var err error
	ll.once.Do(func() { err = ll.l.Close() })
	return err
}

// httpKey identifies the HTTP endpoint by its address; what it serves
// follows the generation in force.
type httpKey struct{ address string }

// frontPlan is the front a configuration needs, bound but not yet in
// force: commit puts it in force, abort undoes it.
type frontPlan struct {
	cfg   *Config
	parts *hold
	// listeners are those of the configuration, kept or bound anew, with
	// the certificate source each is to use.
	listeners map[listenerKey]*liveListener
	certs     map[listenerKey]*edgetls.Certs
	fresh     []*liveListener
	// evicted are running listeners closed early because a listener of
	// the new configuration needs their socket; abort reopens them.
	evicted []*liveListener
	http    *httpEndpoint
}

// planFront binds what cfg's front needs that is not running yet.
// Running listeners cfg changes in place (other settings on a socket the
// new configuration needs) are closed first, their queries in flight
// answered; abort reopens them if the reload fails after all.
func (s *Server) planFront(ctx context.Context, cfg *Config) (_ *frontPlan, err error) {
	fp := &frontPlan{cfg: cfg, parts: s.pool.hold(), listeners: make(map[listenerKey]*liveListener),
		certs: make(map[listenerKey]*edgetls.Certs)}
	defer func() {
		if err != nil {
			s.abortFront(fp)
		}
	}()
	s.mu.Lock()
	running := make(map[listenerKey]*liveListener, len(s.listeners))
	for k, ll := range s.listeners {
		running[k] = ll
	}
	s.mu.Unlock()
	want := make(map[listenerKey]bool)
	for _, spec := range cfg.Listeners {
		want[cfg.listenerKey(spec)] = true
	}
	for _, spec := range cfg.Listeners {
		k := cfg.listenerKey(spec)
		var certs *edgetls.Certs
		if spec.encrypted() {
			if certs, err = takeCerts(ctx, fp.parts, cfg, spec, s.log); err != nil {
				return nil, err
			}
			fp.certs[k] = certs
		}
		if _, ok := running[k]; !ok {
			fp.evict(running, want, spec, s)
		}
		ll, fresh, err := take(fp.parts, k, func() (*liveListener, func() error, error) {
			ll := &liveListener{spec: spec}
			if certs != nil {
				ll.certs = new(atomic.Pointer[edgetls.Certs])
				ll.certs.Store(certs)
			}
			l, err := s.open(spec, cfg, ll.certs)
			if err != nil {
				return nil, nil, err
			}
			ll.l = l
			return ll, ll.close, nil
		})
		if err != nil {
			if spec.Optional {
				s.log.Warn("optional listener not started", "proto", spec.Proto, "address", spec.Address, "error", err.Error())
				continue
			}
			return nil, fmt.Errorf("listen %s %s: %w", spec.Proto, spec.Address, err)
		}
		if fresh {
			fp.fresh = append(fp.fresh, ll)
		}
		fp.listeners[k] = ll
	}
	if a := cfg.Metrics.Address; a != "" {
		if fp.http, _, err = take(fp.parts, httpKey{a}, func() (*httpEndpoint, func() error, error) {
			e, err := s.startHTTP(a)
			if err != nil {
				return nil, nil, err
			}
			return e, e.close, nil
		}); err != nil {
			return nil, err
		}
	}
	if err := s.planAdmin(fp, cfg); err != nil {
		return nil, err
	}
	return fp, nil
}

// evict closes the running listeners that spec's socket needs and the
// new configuration does not keep. Listeners on port 0 get a port of
// their own and are never in the way.
func (fp *frontPlan) evict(running map[listenerKey]*liveListener, want map[listenerKey]bool, spec ListenerSpec, s *Server) {
	for k, ll := range running {
		if want[k] || strings.HasSuffix(ll.spec.Address, ":0") {
			continue
		}
		for _, sock := range ll.spec.sockets() {
			if slices.Contains(spec.sockets(), sock) {
				s.log.Info("replacing a listener whose settings changed", "proto", ll.spec.Proto, "address", ll.spec.Address)
				ll.close()
				fp.evicted = append(fp.evicted, ll)
				delete(running, k)
				break
			}
		}
	}
}

// commitFront puts fp in force, under s.mu: new listeners start serving,
// every listener reads the certificate source fp gives it and serves
// under the server limits of fp's configuration, and what the
// previous front held and fp does not is closed.
func (s *Server) commitFront(fp *frontPlan) {
	lim := fp.cfg.Server
	if err := s.limiter.SetConfig(fp.cfg.RateLimit); err != nil {
		// Validate refuses what SetConfig would.
		s.log.Error("rate limits not applied", "error", err.Error())
	}
	for k, ll := range fp.listeners {
		if ll.certs != nil {
			ll.certs.Store(fp.certs[k])
		}
		if err := ll.l.SetLimits(lim); err != nil {
			// Validate refuses what SetLimits would.
			s.log.Error("server limits not applied", "proto", ll.spec.Proto, "address", ll.spec.Address, "error", err.Error())
		}
	}
	for _, ll := range fp.fresh {
		go s.serve(ll.l)
	}
	old := s.front
	s.front, s.listeners, s.httpEnd = fp.parts, fp.listeners, fp.http
	old.release()
}

// abortFront undoes planFront: what it bound is closed and the listeners
// it closed early are reopened with their old settings.
func (s *Server) abortFront(fp *frontPlan) {
	fp.parts.release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	cur := s.gen.Load().cfg
	for _, ll := range fp.evicted {
		l, err := s.open(ll.spec, cur, ll.certs)
		if err != nil {
			s.log.Error("listener lost: reopening it after a failed reload failed", "proto", ll.spec.Proto, "address", ll.spec.Address, "error", err.Error())
			continue
		}
		ll.l, ll.once = l, sync.Once{}
		go s.serve(l)
	}
}

// open binds one listener of cfg; certs is the source of an encrypted
// listener's certificates.
func (s *Server) open(spec ListenerSpec, cfg *Config, certs *atomic.Pointer[edgetls.Certs]) (listener, error) {
	ap, err := netip.ParseAddrPort(spec.Address)
	if err != nil {
		return nil, err
	}
	lc := listen.Config{
		Addr: ap, Handler: s.handler, Logger: s.log, Metrics: s.lmet,
		Limits: cfg.Server,
		ACL:    spec.acl(), RateLimiter: s.limiter,
		ServerName: spec.ServerName, NoPadding: spec.Padding != nil && !*spec.Padding,
		HTTPPath: spec.Path, H2C: spec.H2C, HTTP3: spec.HTTP3,
		RequireTSIG: spec.TSIG == TSIGRequired,
		Inherited:   s.inherit, QUICGate: s.quicGate, Sockets: spec.Sockets,
	}
	if spec.encrypted() {
		if certs == nil {
			return nil, errors.New("no certificate configured")
		}
		lc.TLS = serverTLS(certs)
		s.tickets.Apply(lc.TLS)
		lc.QUIC = s.quicKeys
		lc.QUICRouting = s.quicRouting
	}
	k, _ := spec.kind()
	switch k.Kind {
	case pipeline.KindUDP:
		return listen.ListenUDP(lc)
	case pipeline.KindTCP:
		return listen.ListenTCP(lc)
	case pipeline.KindDoT:
		return listen.ListenDoT(lc)
	case pipeline.KindDoH:
		return listen.ListenDoH(lc)
	case pipeline.KindDoQ:
		return listen.ListenDoQ(lc)
	}
	return nil, fmt.Errorf("unknown proto %q", spec.Proto)
}

func (s *Server) serve(l listener) {
	if err := l.Serve(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Error("listener stopped", "address", l.Addr().String(), "error", err.Error())
	}
}
