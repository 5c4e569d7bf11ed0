package profile

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The steps of the Android check, in order.
const (
	StepResolve = "resolve"
	StepConnect = "connect"
	StepTLS     = "tls"
	StepProbe   = "probe"
)

// ProbeSuffix is what Android's probe name ends with; six random
// characters and this make the name, so no cache answers it.
const ProbeSuffix = "-dnsotls-ds.metric.gstatic.com."

// probeChars is the alphabet of Android's random prefix (its
// kDnsSafeChars, which lacks g and G).
const probeChars = "abcdefhijklmnopqrstuvwxyzABCDEFHIJKLMNOPQRSTUVWXYZ0123456789"

// probeTries is how many times Android sends the probe when the
// connection closes before the reply: DnsTlsQueryMap's kMaxTries, each
// try on a new connection.
const probeTries = 3

// Android checks a DNS-over-TLS server the way Android's Private DNS in
// strict mode ("Private DNS provider hostname") validates it before use
// (DnsResolver's DnsTlsTransport::validate):
//
//  1. resolve Host to its addresses (A and AAAA);
//  2. for each address, connect over TCP to port 853;
//  3. TLS with SNI Host, the certificate verified for Host against the
//     system roots;
//  4. send an AAAA query for <6 random characters>-dnsotls-ds.metric.gstatic.com
//     (RD set) over that connection; a reply with the query's ID that holds
//     exactly one question passes, whatever its rcode and answers. A reply
//     without a question, a closed connection (the query is sent again on
//     a new connection, at most 3 times in all) or no reply fails.
//
// Android uses the addresses that pass; Run passes only when all do. Run
// may be called concurrently when Rand is nil or safe for concurrent use.
type Android struct {
	// Host is the name typed into Android's Private DNS setting.
	Host string
	// Port is the DoT port; 853, Android's only one, when zero.
	Port uint16
	// Resolver is the ip:port (port 53 when left out) of a DNS server
	// asked for Host's addresses over UDP (TCP when truncated); empty
	// uses the system resolver.
	Resolver string
	// Roots verifies the certificate; nil uses the system roots (on
	// Linux SSL_CERT_FILE and SSL_CERT_DIR name other ones).
	Roots *x509.CertPool
	// Timeout bounds each step and each probe try; 5 s when zero.
	Timeout time.Duration
	// Rand makes the probe name and query ID; crypto/rand when nil.
	Rand io.Reader
	// Now is the time certificates are verified at; time.Now when nil.
	Now func() time.Time
}

// Step is the outcome of one step, for one address from the connect
// step on.
type Step struct {
	Name   string         // StepResolve, StepConnect, StepTLS or StepProbe
	Addr   netip.AddrPort // the address, zero for StepResolve
	OK     bool
	Detail string // what was found, or why it failed
}

// ErrHost is wrapped by Validate's errors.
var ErrHost = errors.New("bad Private DNS host name")

// Validate checks Host as Android's setting takes it: a host name, not an
// address, without scheme or port.
func (a *Android) Validate() error {
	h := a.Host
	switch {
	case h == "":
		return fmt.Errorf("%w: empty", ErrHost)
	case strings.Contains(h, "://") || strings.Contains(h, "/"):
		return fmt.Errorf("%w %q: a host name alone, without scheme or path", ErrHost, h)
	}
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return fmt.Errorf("%w %q: an IP address; Private DNS takes the host name in the server's certificate", ErrHost, h)
	}
	if strings.Contains(h, ":") {
		return fmt.Errorf("%w %q: a host name alone, without port (Private DNS always uses 853)", ErrHost, h)
	}
	if !isHostName(h) {
		return fmt.Errorf("%w %q: not a host name", ErrHost, h)
	}
	return nil
}

// Run runs the steps, calling report after each, and returns whether
// every step passed for every address. A failed step ends the steps of its
// address; a failed resolution ends the check. Canceling ctx fails the
// step under way.
func (a *Android) Run(ctx context.Context, report func(Step)) bool {
	if err := a.Validate(); err != nil {
		report(Step{Name: StepResolve, Detail: err.Error()})
		return false
	}
	addrs, how, err := a.resolve(ctx)
	if err != nil {
		report(Step{Name: StepResolve, Detail: err.Error()})
		return false
	}
	shown := make([]string, len(addrs))
	for i, ip := range addrs {
		shown[i] = ip.String()
	}
	report(Step{Name: StepResolve, OK: true, Detail: fmt.Sprintf("%s: %s (%s)", a.Host, strings.Join(shown, ", "), how)})
	all := true
	for _, ip := range addrs {
		if !a.checkAddr(ctx, netip.AddrPortFrom(ip, a.port()), report) {
			all = false
		}
	}
	return all
}

func (a *Android) port() uint16 {
	if a.Port == 0 {
		return 853
	}
	return a.Port
}

func (a *Android) timeout() time.Duration {
	if a.Timeout <= 0 {
		return 5 * time.Second
	}
	return a.Timeout
}

func (a *Android) random() io.Reader {
	if a.Rand == nil {
		return rand.Reader
	}
	return a.Rand
}

// checkAddr runs the connect, TLS and probe steps against one address.
func (a *Android) checkAddr(ctx context.Context, ap netip.AddrPort, report func(Step)) bool {
	start := time.Now()
	conn, err := a.dial(ctx, ap)
	if err != nil {
		report(Step{Name: StepConnect, Addr: ap, Detail: err.Error()})
		return false
	}
	report(Step{Name: StepConnect, Addr: ap, OK: true, Detail: fmt.Sprintf("TCP connected in %v", time.Since(start).Round(10*time.Microsecond))})
	tconn, err := a.handshake(ctx, conn)
	if err != nil {
		report(Step{Name: StepTLS, Addr: ap, Detail: err.Error()})
		return false
	}
	report(Step{Name: StepTLS, Addr: ap, OK: true, Detail: describeTLS(tconn.ConnectionState())})
	detail, err := a.probe(ctx, ap, tconn)
	if err != nil {
		report(Step{Name: StepProbe, Addr: ap, Detail: err.Error()})
		return false
	}
	report(Step{Name: StepProbe, Addr: ap, OK: true, Detail: detail})
	return true
}

func (a *Android) dial(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout())
	defer cancel()
	d := &net.Dialer{}
	return d.DialContext(ctx, "tcp", ap.String())
}

// handshake runs TLS over conn and closes conn when it fails.
func (a *Android) handshake(ctx context.Context, conn net.Conn) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout())
	defer cancel()
	tc := tls.Client(conn, &tls.Config{
		ServerName: strings.TrimSuffix(a.Host, "."),
		RootCAs:    a.Roots,
		MinVersion: tls.VersionTLS12,
		Time:       a.Now,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

func describeTLS(st tls.ConnectionState) string {
	leaf := st.PeerCertificates[0]
	return fmt.Sprintf("%s, certificate for %s issued by %q, valid until %s",
		tls.VersionName(st.Version), strings.Join(leaf.DNSNames, ", "), leaf.Issuer.String(), leaf.NotAfter.UTC().Format(time.RFC3339))
}

// probe sends Android's validation query over conn, which it closes, and
// judges the reply as Android does.
func (a *Android) probe(ctx context.Context, ap netip.AddrPort, conn *tls.Conn) (string, error) {
	q, err := a.probeQuery()
	if err != nil {
		return "", err
	}
	wire, err := q.Pack()
	if err != nil {
		return "", fmt.Errorf("pack the probe: %w", err)
	}
	name := strings.TrimSuffix(q.Question[0].Name, ".")
	for try := 1; ; try++ {
		reply, err := exchange(ctx, conn, wire, a.timeout())
		conn.Close()
		if err == nil {
			return judge(reply, q.Id, name)
		}
		if !closedEarly(err) {
			return "", fmt.Errorf("AAAA %s: %w", name, err)
		}
		if try == probeTries {
			return "", fmt.Errorf("AAAA %s: the server closed the connection before replying, %d times (Android sends a query at most %d times)", name, try, probeTries)
		}
		// Android sends the query again on a new connection.
		raw, err := a.dial(ctx, ap)
		if err != nil {
			return "", fmt.Errorf("AAAA %s: the server closed the connection before replying, and connecting again failed: %w", name, err)
		}
		if conn, err = a.handshake(ctx, raw); err != nil {
			return "", fmt.Errorf("AAAA %s: the server closed the connection before replying, and TLS again failed: %w", name, err)
		}
	}
}

// probeQuery is Android's validation query: a random ID, RD, one
// question AAAA IN for a random name under metric.gstatic.com, nothing
// else.
func (a *Android) probeQuery() (*dns.Msg, error) {
	var rnd [8]byte
	if _, err := io.ReadFull(a.random(), rnd[:]); err != nil {
		return nil, fmt.Errorf("make the probe name: %w", err)
	}
	var prefix [6]byte
	for i := range prefix {
		prefix[i] = probeChars[int(rnd[i])%len(probeChars)]
	}
	q := new(dns.Msg)
	q.SetQuestion(string(prefix[:])+ProbeSuffix, dns.TypeAAAA)
	q.Id = binary.BigEndian.Uint16(rnd[6:])
	q.RecursionDesired = true
	return q, nil
}

// exchange writes one length-prefixed query (RFC 7858 §3.3) and reads one
// reply, both within timeout and ctx.
func exchange(ctx context.Context, conn net.Conn, query []byte, timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	msg := binary.BigEndian.AppendUint16(nil, uint16(len(query)))
	if _, err := conn.Write(append(msg, query...)); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	var n [2]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return nil, readErr(ctx, err, timeout)
	}
	reply := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(conn, reply); err != nil {
		return nil, readErr(ctx, err, timeout)
	}
	return reply, nil
}

func readErr(ctx context.Context, err error, timeout time.Duration) error {
	if ctx.Err() != nil {
		return fmt.Errorf("no reply: %w", context.Cause(ctx))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no reply within %v", timeout)
	}
	return err
}

// closedEarly tells whether err is the server closing the connection
// rather than a timeout or a local failure.
func closedEarly(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// judge applies Android's checkDnsResponse to a reply: at least a header,
// the query's ID (Android matches replies to queries by ID and drops
// others) and exactly one question. The rcode, the answers and the rest
// of the message are not looked at.
func judge(reply []byte, id uint16, name string) (string, error) {
	if len(reply) < 12 {
		return "", fmt.Errorf("AAAA %s: a %d-byte reply, shorter than a DNS header", name, len(reply))
	}
	if got := binary.BigEndian.Uint16(reply[0:2]); got != id {
		return "", fmt.Errorf("AAAA %s: the reply has ID %d, not the query's %d (Android drops it and keeps waiting)", name, got, id)
	}
	qd := binary.BigEndian.Uint16(reply[4:6])
	an := binary.BigEndian.Uint16(reply[6:8])
	rcode := int(reply[3] & 0x0f)
	if qd != 1 {
		return "", fmt.Errorf("AAAA %s: the reply (%s) has %d questions; Android needs exactly 1", name, rcodeName(rcode), qd)
	}
	return fmt.Sprintf("AAAA %s: %s, 1 question, %d answers (any rcode passes)", name, rcodeName(rcode), an), nil
}

func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rcode)
}
