package edgetls

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testZone is the zone the test DNS server answers for pebble: every name
// in it has the address 127.0.0.1, so pebble validates challenges against
// the solvers and listeners of the test.
const testZone = "dnsedge.test."

// pebble is a running pebble ACME test server (Debian package "pebble").
type pebble struct {
	dirURL   string       // ACME directory
	mgmtURL  string       // management interface (roots, intermediates)
	caRoot   string       // PEM file of the CA of pebble's HTTPS certificate
	client   *http.Client // trusts pebble's HTTPS certificate
	httpPort int          // where pebble sends HTTP-01 validations
	tlsPort  int          // where pebble sends TLS-ALPN-01 validations
	stop     func()       // kills pebble and its DNS server; idempotent
}

// pebbleBinary returns the pebble executable, skipping the test when it is
// missing unless E2E_REQUIRED=1.
func pebbleBinary(t *testing.T) string {
	bin, err := exec.LookPath("pebble")
	if err != nil {
		bin = "/usr/bin/pebble"
		if _, err = os.Stat(bin); err != nil {
			if os.Getenv("E2E_REQUIRED") == "1" {
				t.Fatalf("pebble not found and E2E_REQUIRED=1: %v", err)
			}
			t.Skipf("pebble not found (apt-get install pebble): %v", err)
		}
	}
	return bin
}

// startPebble starts pebble on loopback ports with a DNS server that
// resolves testZone to 127.0.0.1. Real validation is on: neither
// PEBBLE_VA_ALWAYS_VALID nor authorization reuse.
func startPebble(t *testing.T) *pebble {
	t.Helper()
	bin := pebbleBinary(t)
	dir := t.TempDir()

	// The Debian package ships no certificate for pebble's own HTTPS
	// listener, so the test makes one; ca_root is its CA.
	ca := issue(t, nil, "pebble test CA", true)
	leaf := issue(t, ca, "127.0.0.1", false)
	p := &pebble{caRoot: filepath.Join(dir, "pebble-ca.pem")}
	writeFile(t, p.caRoot, ca.certPEM())
	writeFile(t, filepath.Join(dir, "cert.pem"), leaf.certPEM())
	writeFile(t, filepath.Join(dir, "key.pem"), leaf.keyPEM(t))
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}}
	p.client = &http.Client{Transport: transport, Timeout: 5 * time.Second}

	dnsAddr, stopDNS := startTestDNS(t)
	logs := &logBuffer{}
	var stopPebble func()
	var err error
	for attempt := range 3 { // free ports can be taken before pebble binds them
		stopPebble, err = p.run(t, bin, dir, dnsAddr, logs)
		if err == nil {
			break
		}
		t.Logf("start pebble, attempt %d: %v", attempt+1, err)
	}
	if err != nil {
		stopDNS()
		t.Fatalf("start pebble: %v\n%s", err, logs.buf.String())
	}
	stopped := false
	p.stop = func() {
		if !stopped {
			stopped = true
			stopPebble()
			stopDNS()
			transport.CloseIdleConnections()
		}
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("pebble output:\n%s", logs.buf.String())
		}
	})
	return p
}

// run writes a config with fresh ports, starts pebble and waits for its
// directory to answer. It returns a function that kills pebble.
func (p *pebble) run(t *testing.T, bin, dir, dnsAddr string, logs *logBuffer) (func(), error) {
	ports := make([]int, 4)
	for i := range ports {
		ports[i] = freePort(t)
	}
	p.httpPort, p.tlsPort = ports[2], ports[3]
	listen, mgmt := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	p.dirURL, p.mgmtURL = "https://"+listen+"/dir", "https://"+mgmt
	cfg, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       p.httpPort,
		"tlsPort":                        p.tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}})
	if err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(dir, "pebble-config.json")
	writeFile(t, cfgFile, cfg)

	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsAddr)
	cmd.Env = []string{ // no proxy variables: pebble must reach 127.0.0.1 directly
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"PEBBLE_VA_NOSLEEP=1",
		"PEBBLE_WFE_NONCEREJECT=0", // badNonce retries are acmez's business, not ours
		"PEBBLE_AUTHZREUSE=0",      // every order is validated again
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	kill := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.client.Get(p.dirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return kill, nil
			}
		}
		select {
		case <-exited:
			return nil, errors.New("pebble exited before its directory answered")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			kill()
			return nil, fmt.Errorf("pebble directory %s did not answer: %v", p.dirURL, err)
		}
	}
}

// get fetches a PEM document from pebble's management interface.
func (p *pebble) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := p.client.Get(p.mgmtURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get %s: %v %s", path, err, resp.Status)
	}
	return body
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startTestDNS serves testZone on UDP 127.0.0.1: A queries get 127.0.0.1,
// other types in the zone an empty answer, names outside it NXDOMAIN.
func startTestDNS(t *testing.T) (string, func()) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, done := make(chan struct{}), make(chan struct{})
	srv := &dns.Server{
		PacketConn:        pc,
		NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg).SetReply(r)
			m.Authoritative = true
			if len(r.Question) == 1 {
				q := r.Question[0]
				switch {
				case !dns.IsSubDomain(testZone, q.Name):
					m.Rcode = dns.RcodeNameError
				case q.Qtype == dns.TypeA:
					rr, err := dns.NewRR(q.Name + " 60 IN A 127.0.0.1")
					if err != nil {
						panic(err)
					}
					m.Answer = append(m.Answer, rr)
				}
			}
			_ = w.WriteMsg(m)
		}),
	}
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	<-started
	stop := func() {
		_ = srv.Shutdown()
		<-done
	}
	return pc.LocalAddr().String(), stop
}

// alpnListener accepts TLS connections like a dnsedge listener: it closes
// those that negotiated ACMEALPN after the handshake, counting them, and
// echoes on the others.
type alpnListener struct {
	addr       string
	challenges chan struct{} // one value per challenge handshake
}

func listenLikeDnsedge(t *testing.T, addr string, cfg *tls.Config) *alpnListener {
	t.Helper()
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := &alpnListener{addr: ln.Addr().String(), challenges: make(chan struct{}, 100)}
	serveOn(t, &challengeCounter{Listener: ln, l: l})
	return l
}

// challengeCounter completes handshakes in Accept, so that the echo loop
// of serveOn only sees DNS-like connections.
type challengeCounter struct {
	net.Listener
	l *alpnListener
}

func (c *challengeCounter) Accept() (net.Conn, error) {
	for {
		conn, err := c.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := conn.(*tls.Conn)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err == nil && tc.ConnectionState().NegotiatedProtocol == ACMEALPN {
			c.l.challenges <- struct{}{}
			tc.Close()
			continue
		}
		if err != nil {
			tc.Close()
			continue
		}
		return tc, nil
	}
}

// waitChallenge fails the test unless a challenge handshake completed on
// the listener. The CA may finish its side of the handshake a moment
// before the server does, hence the wait.
func (l *alpnListener) waitChallenge(t *testing.T) {
	t.Helper()
	select {
	case <-l.challenges:
	case <-time.After(5 * time.Second):
		t.Fatal("no challenge handshake on our listener")
	}
}

func portAddr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
