package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport"
)

// queryOpts is a parsed dnsedge query command line.
type queryOpts struct {
	server   string // as given, after @ (empty: the first nameserver of resolvConf)
	ep       transport.Endpoint
	http3    bool // h3://: DoH over HTTP/3
	name     string
	qtype    uint16
	qclass   uint16
	json     bool
	timeout  time.Duration
	insecure bool
	caFile   string
	tlsName  string
	dnssec   bool
	pin      transport.Pin
	resume   bool

	verifyName string // the TLS server name, once known
}

// resolvConf is where the default server and the resolvers of host names
// in URLs come from.
const resolvConf = "/etc/resolv.conf"

// errUsage marks a command line that cannot be run: exit 2.
var errUsage = errors.New("usage")

// querySchemes are the schemes dnsedge query takes: the upstream URL
// schemes of transport, and h3 for DoH over HTTP/3.
var querySchemes = map[string]bool{"udp": true, "tcp": true, "tls": true, "https": true, "h3": true, "quic": true}

// query runs dnsedge query [@URL] NAME [TYPE] [CLASS]: one query through the
// transport package's exchanger for the URL's scheme, printed dig-style
// (or as JSON) with the address and family used, the timings, the TLS
// session and any Extended DNS Errors. Exit 2 for a bad command line, 1
// when no answer came, 0 for any answer, whatever its rcode.
func query(args []string, stdout, stderr io.Writer) int {
	o, err := parseQueryArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "dnsedge query: %v\n", err)
		}
		return 2
	}
	boot, err := resolvConfServers(resolvConf)
	if o.server == "" {
		if err != nil || len(boot) == 0 {
			fmt.Fprintf(stderr, "dnsedge query: no server given and none in %s (%v): give @URL\n", resolvConf, err)
			return 2
		}
		o.server = "udp://" + boot[0].String()
		o.ep = transport.Endpoint{Scheme: "udp", Addr: boot[0].Addr(), Port: boot[0].Port()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	rep, err := runQuery(ctx, o, boot)
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge query: %s: %v\n", o.server, err)
		return 1
	}
	if o.json {
		err = writeJSON(stdout, rep)
	} else {
		err = writeText(stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge query: %v\n", err)
		return 1
	}
	return 0
}

// parseQueryArgs parses the command line; flags may come before, between
// or after the positional arguments, as with dig. An error that is not
// errUsage or flag.ErrHelp is a one-line description to print.
func parseQueryArgs(args []string, stderr io.Writer) (queryOpts, error) {
	o := queryOpts{}
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dnsedge query [flags] [@URL] NAME [TYPE] [CLASS]")
		fs.PrintDefaults()
	}
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of dig-style text")
	typ := fs.String("type", "", "query type (default A; a TYPE argument also sets it)")
	class := fs.String("class", "", "query class: IN (default), CH or CHAOS, HS or HESIOD, or CLASSnnn; a CLASS argument also sets it")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "time for the whole query, resolving a host name in URL included")
	fs.BoolVar(&o.insecure, "insecure", false, "tls, https, h3, quic: do not verify the server certificate")
	fs.StringVar(&o.caFile, "ca", "", "tls, https, h3, quic: PEM file of roots to verify the server with instead of the system's")
	fs.StringVar(&o.tlsName, "tls-name", "", "tls, https, h3, quic: name the certificate must carry, sent as SNI (default the URL's host)")
	fs.BoolVar(&o.dnssec, "dnssec", false, "set the DO bit (RFC 3225)")
	v4 := fs.Bool("4", false, "use IPv4 only")
	v6 := fs.Bool("6", false, "use IPv6 only")
	fs.BoolVar(&o.resume, "resume", false, "tls, https, h3, quic: query again on a new connection and report whether it resumed the TLS session")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return o, err
			}
			return o, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) > 0 && strings.HasPrefix(pos[0], "@") {
		o.server = pos[0][1:]
		pos = pos[1:]
		var err error
		if o.ep, o.http3, err = parseServer(o.server); err != nil {
			return o, err
		}
	}
	if len(pos) == 0 {
		return o, errors.New("no name to query: dnsedge query [@URL] NAME [TYPE] [CLASS]")
	}
	// After the name, a TYPE and a CLASS in either order, as dig takes
	// them: what reads as a class is one.
	var typeArg, classArg string
	for _, a := range pos[1:] {
		switch _, cerr := parseClass(a); {
		case cerr == nil && classArg == "":
			classArg = a
		case cerr != nil && typeArg == "":
			typeArg = a
		default:
			return o, fmt.Errorf("unexpected argument %q: dnsedge query [@URL] NAME [TYPE] [CLASS]", a)
		}
	}
	if typeArg != "" {
		if *typ != "" && !strings.EqualFold(*typ, typeArg) {
			return o, fmt.Errorf("type given twice: -type %s and %s", *typ, typeArg)
		}
		*typ = typeArg
	}
	if classArg != "" {
		if *class != "" && !strings.EqualFold(*class, classArg) {
			return o, fmt.Errorf("class given twice: -class %s and %s", *class, classArg)
		}
		*class = classArg
	}
	if *typ == "" {
		*typ = "A"
	}
	if *class == "" {
		*class = "IN"
	}
	var err error
	if o.qtype, err = parseType(*typ); err != nil {
		return o, err
	}
	if o.qclass, err = parseClass(*class); err != nil {
		return o, err
	}
	if o.name, err = parseName(pos[0]); err != nil {
		return o, err
	}
	if *v4 && *v6 {
		return o, errors.New("-4 and -6 exclude each other")
	}
	o.pin = transport.PinBoth
	if *v4 {
		o.pin = transport.PinIPv4
	} else if *v6 {
		o.pin = transport.PinIPv6
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout %s: must be positive", o.timeout)
	}
	tlsFlags := o.insecure || o.caFile != "" || o.tlsName != "" || o.resume
	if tlsFlags && o.server != "" && !o.ep.Encrypted() {
		return o, fmt.Errorf("-insecure, -ca, -tls-name and -resume apply to tls, https, h3 and quic servers, not %s://", o.ep.Scheme)
	}
	if o.insecure && o.caFile != "" {
		return o, errors.New("-insecure and -ca exclude each other")
	}
	if o.server != "" && o.ep.Addr.IsValid() && !o.pin.Allows(transport.FamilyOf(o.ep.Addr)) {
		return o, fmt.Errorf("%s is an %s address but -%s asks for %s", o.ep.Addr, transport.FamilyOf(o.ep.Addr), strings.TrimPrefix(o.pin.String(), "ipv"), o.pin)
	}
	return o, nil
}

// parseServer parses the server of @URL: an upstream URL as transport
// takes them (udp, tcp, tls, https, quic), h3:// for DoH over HTTP/3, or
// a bare host[:port] for UDP, as dig's @server.
func parseServer(raw string) (ep transport.Endpoint, http3 bool, err error) {
	if raw == "" {
		return ep, false, errors.New("empty server after @")
	}
	if !strings.Contains(raw, "://") {
		raw = "udp://" + raw
	}
	scheme, rest, _ := strings.Cut(raw, "://")
	if !querySchemes[strings.ToLower(scheme)] {
		return ep, false, fmt.Errorf("unknown scheme %q in %q (want udp, tcp, tls, https, h3 or quic)", scheme, raw)
	}
	scheme = strings.ToLower(scheme)
	if scheme == "h3" {
		scheme, http3 = "https", true
	}
	raw = scheme + "://" + rest
	ep, err = transport.ParseEndpoint(raw)
	if err != nil {
		return ep, false, fmt.Errorf("bad server %q: %w", raw, err)
	}
	return ep, http3, nil
}

// parseType parses a type mnemonic (A, aaaa) or RFC 3597's TYPEnnn.
func parseType(s string) (uint16, error) {
	u := strings.ToUpper(s)
	if t, ok := dns.StringToType[u]; ok && t != dns.TypeNone {
		return t, nil
	}
	if n, ok := strings.CutPrefix(u, "TYPE"); ok {
		if v, err := strconv.ParseUint(n, 10, 16); err == nil {
			return uint16(v), nil
		}
	}
	return 0, fmt.Errorf("unknown type %q (a mnemonic such as AAAA, or TYPEnnn)", s)
}

// parseClass parses a query class as dig takes it: IN, CH or CHAOS, HS
// or HESIOD, or RFC 3597's CLASSnnn. ANY and NONE are left out: ANY
// reads as the type, as with dig, and NONE is for updates.
func parseClass(s string) (uint16, error) {
	switch u := strings.ToUpper(s); u {
	case "IN":
		return dns.ClassINET, nil
	case "CH", "CHAOS":
		return dns.ClassCHAOS, nil
	case "HS", "HESIOD":
		return dns.ClassHESIOD, nil
	default:
		if n, ok := strings.CutPrefix(u, "CLASS"); ok {
			if v, err := strconv.ParseUint(n, 10, 16); err == nil {
				return uint16(v), nil
			}
		}
	}
	return 0, fmt.Errorf("unknown class %q (IN, CH, HS, or CLASSnnn)", s)
}

// parseName checks that s is a domain name and makes it fully qualified.
func parseName(s string) (string, error) {
	if _, ok := dns.IsDomainName(s); !ok || s == "" {
		return "", fmt.Errorf("%q is not a domain name", s)
	}
	return dns.Fqdn(s), nil
}

// resolvConfServers returns the nameservers of a resolv.conf file.
func resolvConfServers(path string) ([]netip.AddrPort, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.ParseUint(cc.Port, 10, 16)
	if port == 0 {
		port = 53
	}
	var out []netip.AddrPort
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(port)))
		}
	}
	return out, nil
}

// handshakes records the connections of one exchange: when a stream
// socket connected and from which address (through transport's
// DialTrace), when each TLS handshake completed and its state (through
// the base configuration's VerifyConnection). The exchangers call it
// from their dialing goroutines.
type handshakes struct {
	mu      sync.Mutex
	start   time.Time
	done    []handshake
	connect *connect
}

type connect struct {
	after time.Duration
	local netip.AddrPort
}

func (h *handshakes) connected(local netip.AddrPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.connect = &connect{after: time.Since(h.start), local: local}
}

func (h *handshakes) lastConnect() *connect {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.connect
}

type handshake struct {
	after time.Duration
	state tls.ConnectionState
}

func (h *handshakes) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.start, h.done, h.connect = time.Now(), nil, nil
}

func (h *handshakes) verified(cs tls.ConnectionState) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done = append(h.done, handshake{after: time.Since(h.start), state: cs})
	return nil
}

func (h *handshakes) last() (handshake, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.done) == 0 {
		return handshake{}, false
	}
	return h.done[len(h.done)-1], true
}

// runQuery sends the query: it builds a transport upstream for the
// server (its paths, one per address, as forwarding does), asks the paths
// in order until one answers, and with -resume asks again through a new
// upstream that shares the TLS session cache.
func runQuery(ctx context.Context, o queryOpts, boot []netip.AddrPort) (*queryReport, error) {
	var hs handshakes
	var base *tls.Config
	if o.ep.Encrypted() {
		opts := transport.TLSOptions{ServerName: o.tlsName}
		if o.caFile != "" {
			pool, err := transport.LoadCAFile(o.caFile)
			if err != nil {
				return nil, err
			}
			opts.RootCAs = pool
		}
		var err error
		if base, err = transport.ClientTLSConfig(opts, o.ep); err != nil {
			return nil, err
		}
		base.InsecureSkipVerify = o.insecure
		o.verifyName = base.ServerName
		base.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		base.VerifyConnection = hs.verified
	}
	q := new(dns.Msg)
	q.SetQuestion(o.name, o.qtype)
	q.Question[0].Qclass = o.qclass
	q.SetEdns0(dns.DefaultMsgSize, o.dnssec)

	first, err := exchangeOnce(ctx, o, o.ep, base, boot, q, &hs)
	if err != nil {
		return nil, err
	}
	if o.resume {
		// The same address, over a new connection of a new exchanger
		// that shares the session cache.
		ep := o.ep
		ep.Host, ep.Addr = "", first.path.Addr.Addr()
		again, err := exchangeOnce(ctx, o, ep, base, nil, q, &hs)
		if err != nil {
			return nil, fmt.Errorf("second query, to resume the session: %w", err)
		}
		first.resume = again
	}
	return newReport(o, first), nil
}

// exchange is one query's outcome on the path that answered.
type exchange struct {
	path      transport.PathID
	family    transport.Family
	reply     *dns.Msg
	total     time.Duration
	handshake *handshake // nil when no TLS handshake was made
	connect   *connect   // nil when no stream socket was connected
	tcp       bool       // a truncated UDP answer was asked again over TCP
	failed    []string   // earlier paths that gave no answer, and why
	resume    *exchange  // the -resume query
}

func exchangeOnce(ctx context.Context, o queryOpts, ep transport.Endpoint, base *tls.Config, boot []netip.AddrPort, q *dns.Msg, hs *handshakes) (*exchange, error) {
	deps := transport.UpstreamDeps{
		Registry: transport.NewRegistry(transport.HealthConfig{}, nil),
		Probe:    transport.ProbeSpec{Interval: -1},
	}
	if ep.Host != "" {
		if len(boot) == 0 {
			return nil, fmt.Errorf("no resolver in %s to look %s up with", resolvConf, ep.Host)
		}
		b := transport.NewBootstrap(boot)
		defer b.Close()
		deps.Resolver = b
	}
	u, err := transport.NewUpstream(transport.UpstreamConfig{Name: "query", Endpoint: ep, Pin: o.pin, HTTP3: o.http3, TLSBase: base}, deps)
	if err != nil {
		return nil, err
	}
	defer u.Close()
	if err := u.Start(ctx); err != nil {
		return nil, fmt.Errorf("look up %s: %w", ep.Host, err)
	}
	paths := u.Paths()
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s has no %s address", ep.Host, o.pin)
	}
	var failed []string
	for i, p := range paths {
		// Each path left gets an equal share of the time left.
		deadline, _ := ctx.Deadline()
		actx, cancel := context.WithTimeout(ctx, time.Until(deadline)/time.Duration(len(paths)-i))
		actx = transport.WithDialTrace(actx, &transport.DialTrace{Connected: hs.connected})
		hs.reset()
		start := time.Now()
		r, err := p.Exchanger.Exchange(actx, q)
		used := p
		if err == nil && r.Truncated && p.Stream != nil {
			used = p.Stream
			r, err = p.Stream.Exchanger.Exchange(actx, q)
		}
		total := time.Since(start)
		cancel()
		if err != nil {
			failed = append(failed, err.Error()) // names the address
			continue
		}
		ex := &exchange{path: used.ID, family: used.Family, reply: r, total: total, tcp: used != p, failed: failed}
		if h, ok := hs.last(); ok {
			ex.handshake = &h
		}
		ex.connect = hs.lastConnect()
		return ex, nil
	}
	return nil, errors.New(strings.Join(failed, "; "))
}

// hostPortOf formats a path address as host:port.
func hostPortOf(a netip.AddrPort) string {
	return net.JoinHostPort(a.Addr().String(), strconv.Itoa(int(a.Port())))
}
