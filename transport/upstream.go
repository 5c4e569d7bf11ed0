package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// Pin restricts an upstream to address families.
type Pin uint8

// Pins.
const (
	PinBoth Pin = iota
	PinIPv4
	PinIPv6
)

// ParsePin parses "both" (or ""), "ipv4" or "ipv6".
func ParsePin(s string) (Pin, error) {
	switch s {
	case "", "both":
		return PinBoth, nil
	case "ipv4":
		return PinIPv4, nil
	case "ipv6":
		return PinIPv6, nil
	}
	return 0, fmt.Errorf("unknown family %q (want ipv4, ipv6 or both)", s)
}

func (p Pin) String() string { return [...]string{"both", "ipv4", "ipv6"}[p] }

// Allows reports whether the pin admits family f.
func (p Pin) Allows(f Family) bool {
	return p == PinBoth || (p == PinIPv4 && f == IPv4) || (p == PinIPv6 && f == IPv6)
}

// Endpoint is a parsed upstream URL.
type Endpoint struct {
	Scheme string     // "udp", "tcp", "tls" (DoT), "https" (DoH) or "quic" (DoQ)
	Host   string     // host name, empty when Addr is set
	Addr   netip.Addr // literal address, invalid for a host name
	Port   uint16
	Path   string // https only: the DoH URI template path, "/dns-query" by default
}

// defaultPorts are the ports of each scheme: 53 (RFC 1035), 853 for DoT
// (RFC 7858 §3.1) and DoQ (RFC 9250 §4.1.1), 443 for DoH.
var defaultPorts = map[string]uint16{"udp": 53, "tcp": 53, "tls": 853, "https": 443, "quic": 853}

// ParseEndpoint parses an upstream URL such as udp://192.0.2.1:53,
// tcp://[2001:db8::1]:53, udp://dns.example (port 53 by default),
// tls://dns.example (port 853), https://dns.example/dns-query (port 443;
// the path is kept, "/dns-query" when absent) or quic://dns.example (port
// 853). Only https may have a path; no scheme may have user information,
// a query or a fragment.
func ParseEndpoint(raw string) (Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("parse upstream url: %w", err)
	}
	var e Endpoint
	switch u.Scheme {
	case "udp", "tcp", "tls", "https", "quic":
		e.Scheme = u.Scheme
	case "":
		return Endpoint{}, fmt.Errorf("upstream %q has no scheme: write udp://%s or tcp://%s", raw, raw, raw)
	default:
		return Endpoint{}, fmt.Errorf("unknown upstream scheme %q (want udp, tcp, tls, https or quic)", u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return Endpoint{}, fmt.Errorf("upstream url %q: user information, query and fragment are not allowed", raw)
	}
	if e.Scheme == "https" {
		e.Path = u.EscapedPath()
		if e.Path == "" {
			e.Path = "/dns-query"
		}
	} else if u.Path != "" && u.Path != "/" {
		return Endpoint{}, fmt.Errorf("upstream url %q: only scheme://host:port is allowed for %s", raw, u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return Endpoint{}, fmt.Errorf("upstream url %q has no host", raw)
	}
	e.Port = defaultPorts[e.Scheme]
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return Endpoint{}, fmt.Errorf("upstream url %q: bad port %q", raw, p)
		}
		e.Port = uint16(n)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return Endpoint{}, fmt.Errorf("upstream url %q: zoned addresses are not supported", raw)
		}
		e.Addr = a.Unmap()
	} else {
		e.Host = host
	}
	return e, nil
}

// Encrypted reports whether the endpoint's scheme runs over TLS or QUIC.
func (e Endpoint) Encrypted() bool {
	return e.Scheme == "tls" || e.Scheme == "https" || e.Scheme == "quic"
}

// Resolver looks up a host's addresses of one family and how long they may
// be kept.
type Resolver interface {
	LookupAddrs(ctx context.Context, host string, f Family) ([]netip.Addr, time.Duration, error)
}

// UpstreamConfig describes one upstream.
type UpstreamConfig struct {
	Name     string
	Endpoint Endpoint
	Pin      Pin
	// Prefer is the family tried first within this upstream; IPv6 by
	// default, as RFC 8305 §4 recommends.
	Prefer Family
	// TLS verifies the server of a tls, https or quic endpoint; ignored
	// for udp and tcp.
	TLS TLSOptions
	// HTTP3 sends an https endpoint's queries over HTTP/3 instead of
	// HTTP/2.
	HTTP3 bool
	// TLSBase, when not nil, is the base client configuration of an
	// encrypted endpoint instead of ClientTLSConfig(TLS, Endpoint), for
	// callers that need more than TLSOptions says (dnsedge query: a
	// handshake callback, a session cache shared by the exchangers it
	// builds one after another, no verification on request). It must
	// carry a ServerName; it is cloned, not kept.
	TLSBase *tls.Config
	// Signer, when not nil, signs every query to the upstream and
	// verifies every reply (TSIG); a reply that does not verify is a
	// malformed reply of its path (ErrBadSignature).
	Signer Signer
}

// UpstreamDeps are what an upstream needs from the server around it.
type UpstreamDeps struct {
	Registry *Registry
	Resolver Resolver // used for host names
	Logger   *slog.Logger
	TCP      TCPConfig // for tcp, the TCP fallback of udp, and tls
	DoH      DoHConfig // for https; TLS, Path and HTTP3 come from the upstream
	DoQ      DoQConfig // for quic
	// MinRefresh and MaxRefresh clamp how long resolved addresses are
	// kept before resolving again. Defaults 1s and 1h. RetryRefresh is the
	// wait after a failed resolution; default 2s.
	MinRefresh, MaxRefresh, RetryRefresh time.Duration
	// Own reports whether an address is one of dnsedge's own listeners;
	// such addresses are never used, since forwarding to them is a loop.
	Own func(netip.AddrPort) bool
	// Probe measures the paths that get no client traffic.
	Probe ProbeSpec
	// Clock runs re-resolution and probes; the real clock when nil.
	Clock clockwork.Clock
}

// ProbeSpec tunes background probes. A path with no exchange for Interval
// (a standby path of the sequential strategy, the slower family, a
// demoted path) is sent one real query, Name and Type with RD
// set, so the path a failover would go to always has a current RTT and
// breaker state. Any answer, REFUSED included, proves the path works. A
// probe takes a half-open breaker's trial when the cooldown has passed
// and is never sent while the breaker is open. Probes are jittered, one
// at a time per path, and never counted as client queries.
type ProbeSpec struct {
	// Interval is the idle time after which a path is probed, and so the
	// most probes per second an idle path costs: 1/Interval. Default 2s;
	// negative turns probing off.
	Interval time.Duration
	// Name and Type default to ". NS", which every recursive resolver
	// answers from its cache and every authoritative server answers,
	// if only with REFUSED.
	Name string
	Type uint16
}

func (p ProbeSpec) withDefaults() ProbeSpec {
	if p.Interval == 0 {
		p.Interval = 2 * time.Second
	}
	if p.Name == "" {
		p.Name = "."
	}
	if p.Type == 0 {
		p.Type = dns.TypeNS
	}
	return p
}

// An Upstream is one configured upstream server and its current paths:
// one per resolved address (its family pinned) and protocol.
type Upstream struct {
	Name string
	cfg  UpstreamConfig
	deps UpstreamDeps

	tls *tls.Config // base client configuration of an encrypted endpoint

	paths   atomic.Pointer[[]*Path]
	mu      sync.Mutex // serialises path set changes; guards retired and probing
	retired []*retired
	probing map[*Path]bool // paths with a probe under way
	stop    chan struct{}
	life    context.Context // canceled by Close: probes under way end
	endLife context.CancelFunc
	done    chan struct{} // closed when re-resolution has stopped
	probed  chan struct{} // closed when the prober has stopped
	probes  sync.WaitGroup
	started atomic.Bool
	once    sync.Once
}

// NewUpstream returns an upstream. For a literal address its path exists
// at once; for a host name, Start resolves it.
func NewUpstream(cfg UpstreamConfig, deps UpstreamDeps) (*Upstream, error) {
	if cfg.Prefer == 0 {
		cfg.Prefer = IPv6
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&deps.MinRefresh, time.Second)
	def(&deps.MaxRefresh, time.Hour)
	def(&deps.RetryRefresh, 2*time.Second)
	deps.Probe = deps.Probe.withDefaults()
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	u := &Upstream{Name: cfg.Name, cfg: cfg, deps: deps, stop: make(chan struct{}), done: make(chan struct{}),
		probed: make(chan struct{}), probing: make(map[*Path]bool)}
	u.life, u.endLife = context.WithCancel(context.Background())
	u.paths.Store(&[]*Path{})
	if cfg.Endpoint.Encrypted() {
		conf := cfg.TLSBase
		if conf == nil {
			var err error
			if conf, err = ClientTLSConfig(cfg.TLS, cfg.Endpoint); err != nil {
				return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
			}
		}
		u.tls = conf
		// Build one path's exchanger now, so a bad configuration fails
		// here rather than on every resolution.
		p, err := u.newPath(PathID{Upstream: cfg.Name, Proto: cfg.Endpoint.Scheme, Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), cfg.Endpoint.Port)}, false)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
		}
		p.close()
	}
	if a := cfg.Endpoint.Addr; a.IsValid() {
		if !cfg.Pin.Allows(FamilyOf(a)) {
			return nil, fmt.Errorf("upstream %s: address %s is %s but the upstream is pinned to %s", cfg.Name, a, FamilyOf(a), cfg.Pin)
		}
		u.setAddrs([]netip.Addr{a})
		close(u.done)
	} else if deps.Resolver == nil {
		return nil, fmt.Errorf("upstream %s: host name %q needs a bootstrap resolver", cfg.Name, cfg.Endpoint.Host)
	}
	return u, nil
}

// Paths returns the current paths, preferred family first, families
// interleaved. The slice must not be modified.
func (u *Upstream) Paths() []*Path { return *u.paths.Load() }

// Start resolves a host name upstream and keeps re-resolving it when the
// answer's TTL runs out, and starts probing idle paths. It returns the
// first resolution's error; the upstream keeps retrying in the background
// either way until Close. Start may be called once.
func (u *Upstream) Start(ctx context.Context) error {
	if u.started.Swap(true) {
		return errors.New("upstream " + u.Name + " already started")
	}
	if u.deps.Probe.Interval > 0 {
		go u.probe()
	} else {
		close(u.probed)
	}
	if u.cfg.Endpoint.Addr.IsValid() {
		return nil
	}
	ttl, err := u.resolve(ctx)
	go u.refresh(ttl, err)
	return err
}

func (u *Upstream) refresh(ttl time.Duration, err error) {
	defer close(u.done)
	for {
		wait := min(max(ttl, u.deps.MinRefresh), u.deps.MaxRefresh)
		if err != nil {
			wait = u.deps.RetryRefresh
		}
		if !u.sleep(wait) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ttl, err = u.resolve(ctx)
		cancel()
	}
}

// sleep waits d on the upstream's clock; false when Close came first.
func (u *Upstream) sleep(d time.Duration) bool {
	t := u.deps.Clock.NewTimer(d)
	select {
	case <-u.stop:
		t.Stop()
		return false
	case <-t.Chan():
		return true
	}
}

// resolve looks the host up in every allowed family and replaces the path
// set. A family whose lookup fails keeps its old paths.
func (u *Upstream) resolve(ctx context.Context) (time.Duration, error) {
	type result struct {
		fam   Family
		addrs []netip.Addr
		ttl   time.Duration
		err   error
	}
	var fams []Family
	for _, f := range []Family{IPv6, IPv4} {
		if u.cfg.Pin.Allows(f) {
			fams = append(fams, f)
		}
	}
	ch := make(chan result, len(fams))
	for _, f := range fams {
		go func() {
			addrs, ttl, err := u.deps.Resolver.LookupAddrs(ctx, u.cfg.Endpoint.Host, f)
			ch <- result{f, addrs, ttl, err}
		}()
	}
	var addrs []netip.Addr
	var errs []error
	ttl := time.Duration(-1)
	for range fams {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
			for _, p := range u.Paths() { // keep what we had for this family
				if p.Family == r.fam && !slices.Contains(addrs, p.ID.Addr.Addr()) {
					addrs = append(addrs, p.ID.Addr.Addr())
				}
			}
			continue
		}
		addrs = append(addrs, r.addrs...)
		if len(r.addrs) > 0 && (ttl < 0 || r.ttl < ttl) {
			ttl = r.ttl
		}
	}
	if len(errs) == len(fams) {
		return 0, fmt.Errorf("resolve upstream %s host %s: %w", u.Name, u.cfg.Endpoint.Host, errors.Join(errs...))
	}
	if len(addrs) == 0 {
		return 0, fmt.Errorf("resolve upstream %s host %s: no %s addresses", u.Name, u.cfg.Endpoint.Host, u.cfg.Pin)
	}
	u.setAddrs(addrs)
	return max(ttl, 0), nil
}

// setAddrs replaces the path set with one path per address, reusing the
// paths of addresses already known, and closes the exchangers of paths that
// went away once in-flight queries had time to finish.
func (u *Upstream) setAddrs(addrs []netip.Addr) {
	u.mu.Lock()
	defer u.mu.Unlock()
	old := make(map[PathID]*Path)
	for _, p := range u.Paths() {
		old[p.ID] = p
	}
	var prefer, other []*Path
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), u.cfg.Endpoint.Port)
		if u.deps.Own != nil && u.deps.Own(ap) {
			u.deps.Logger.Warn("upstream address is one of our own listeners; skipping it to avoid a forwarding loop",
				"upstream", u.Name, "addr", ap.String())
			continue
		}
		id := PathID{Upstream: u.Name, Proto: u.cfg.Endpoint.Scheme, Addr: ap}
		p, ok := old[id]
		if ok {
			delete(old, id)
		} else {
			var err error
			if p, err = u.newPath(id, true); err != nil {
				u.deps.Logger.Warn("cannot build a path; skipping the address", "upstream", u.Name, "addr", ap.String(), "err", err)
				continue
			}
		}
		if p.Family == u.cfg.Prefer {
			prefer = append(prefer, p)
		} else {
			other = append(other, p)
		}
	}
	paths := interleave(append(prefer, other...))
	prev := u.Paths()
	u.paths.Store(&paths)
	if len(prev) > 0 && (len(old) > 0 || len(paths) != len(prev)) {
		var was, now []string
		for _, p := range prev {
			was = append(was, p.ID.Addr.Addr().String())
		}
		for _, p := range paths {
			now = append(now, p.ID.Addr.Addr().String())
		}
		u.deps.Logger.Info("upstream re-resolved: paths changed", "upstream", u.Name,
			"host", u.cfg.Endpoint.Host, "was", was, "now", now)
	}
	if len(old) > 0 {
		r := &retired{}
		for _, p := range old {
			r.paths = append(r.paths, p)
		}
		r.timer = time.AfterFunc(retireAfter, r.close)
		u.retired = append(u.retired, r)
	}
}

// retireAfter is how long the exchangers of a path that went away stay
// open for the queries still in flight on it.
const retireAfter = 10 * time.Second

// retired holds the paths of addresses that went away until their
// exchangers are closed.
type retired struct {
	once  sync.Once
	timer *time.Timer
	paths []*Path
}

func (r *retired) close() {
	r.once.Do(func() {
		r.timer.Stop()
		for _, p := range r.paths {
			p.close()
		}
	})
}

// newPath builds the path id with the exchanger of its protocol, and its
// health from the registry when withHealth is set. A UDP path gets its TCP
// side as Stream.
func (u *Upstream) newPath(id PathID, withHealth bool) (*Path, error) {
	ex, err := newExchanger(id.Proto, id.Addr, u.cfg, u.tls, u.deps)
	if err != nil {
		return nil, err
	}
	if u.cfg.Signer != nil {
		SetSigner(ex, u.cfg.Signer)
	}
	p := &Path{ID: id, Family: FamilyOf(id.Addr.Addr()), Exchanger: ex}
	if id.Proto == "udp" {
		sid := PathID{Upstream: id.Upstream, Proto: "tcp", Addr: id.Addr}
		tcp := NewTCP(id.Addr, u.deps.TCP)
		if u.cfg.Signer != nil {
			SetSigner(tcp, u.cfg.Signer)
		}
		p.Stream = &Path{ID: sid, Family: p.Family, Exchanger: tcp}
		if withHealth {
			p.Stream.Health, p.Stream.reg = u.deps.Registry.Health(sid), u.deps.Registry
			p.Stream.fault = u.deps.Registry.faultOf(sid)
		}
	}
	if withHealth {
		p.Health, p.reg = u.deps.Registry.Health(id), u.deps.Registry
		p.fault = u.deps.Registry.faultOf(id)
	}
	return p, nil
}

// close closes the path's exchanger and its Stream's, and lets go of
// their health: a path that re-resolution dropped is forgotten once its
// last queries are done, unless another path still holds its health.
func (p *Path) close() error {
	if p.closed.Swap(true) {
		return nil
	}
	err := p.Exchanger.Close()
	if p.reg != nil {
		p.reg.Release(p.ID)
	}
	if p.Stream != nil {
		err = errors.Join(err, p.Stream.Exchanger.Close())
		if p.Stream.reg != nil {
			p.Stream.reg.Release(p.Stream.ID)
		}
	}
	return err
}

// Close stops re-resolution and probes and closes every path's exchanger.
func (u *Upstream) Close() error {
	u.once.Do(func() { close(u.stop); u.endLife() })
	if !u.started.Swap(true) {
		close(u.probed)
		if !u.cfg.Endpoint.Addr.IsValid() {
			close(u.done) // never started: nothing resolves
		}
	}
	<-u.done
	<-u.probed
	u.probes.Wait()
	u.mu.Lock()
	for _, r := range u.retired {
		r.close()
	}
	u.retired = nil
	u.mu.Unlock()
	var errs []error
	for _, p := range u.Paths() {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}

// String describes the upstream and its paths for start-up logs.
func (u *Upstream) String() string {
	target := u.cfg.Endpoint.Host
	if target == "" {
		target = u.cfg.Endpoint.Addr.String()
	}
	return fmt.Sprintf("%s (%s://%s%s, family %s)", u.Name, u.cfg.Endpoint.Scheme,
		net.JoinHostPort(target, strconv.Itoa(int(u.cfg.Endpoint.Port))), u.cfg.Endpoint.Path, u.cfg.Pin)
}

// newExchanger returns the exchanger of protocol proto (an endpoint
// scheme) for one address of the upstream cfg; tlsConf is its base client
// configuration when it is encrypted.
func newExchanger(proto string, addr netip.AddrPort, cfg UpstreamConfig, tlsConf *tls.Config, deps UpstreamDeps) (Exchanger, error) {
	switch proto {
	case "udp":
		// Truncated answers are retried on the path's Stream, by the race.
		return NewUDP(addr, nil), nil
	case "tcp":
		return NewTCP(addr, deps.TCP), nil
	case "tls":
		return NewDoT(addr, tlsConf, deps.TCP)
	case "https":
		c := deps.DoH
		c.TLS, c.Path, c.HTTP3 = tlsConf, cfg.Endpoint.Path, cfg.HTTP3
		return NewDoH(addr, c)
	case "quic":
		return NewDoQ(addr, tlsConf, deps.DoQ)
	}
	return nil, fmt.Errorf("unknown protocol %q", proto)
}
