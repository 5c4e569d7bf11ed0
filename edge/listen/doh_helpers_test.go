package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// dohTestConfig returns a Config for a DoH listener on f serving h, with
// TLS from pki (testTLS).
func dohTestConfig(t testing.TB, f family, h pipeline.Handler, pki testPKI) Config {
	cfg := testConfig(t, f, h)
	cfg.TLS = pki.server
	return cfg
}

// startDoH binds a DoH listener, runs Serve and closes it when the test
// ends.
func startDoH(t testing.TB, cfg Config) *DoH {
	t.Helper()
	l, err := ListenDoH(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	return l
}

// dohClient is an HTTP client of one protocol for one listener.
type dohClient struct {
	*http.Client
	base string // scheme, host and port
}

// newDoHClient returns a client speaking proto to l: "h2", "h1" (HTTP/1.1
// over TLS), "h3", "h2c" (cleartext HTTP/2 with prior knowledge) or "h1c"
// (cleartext HTTP/1.1). Its connections are closed when the test ends.
func newDoHClient(t testing.TB, proto string, l *DoH, roots *x509.CertPool) dohClient {
	t.Helper()
	tlsConf := &tls.Config{RootCAs: roots, ServerName: "dns.test"}
	var rt http.RoundTripper
	base := "https://" + l.Addr().String()
	switch proto {
	case "h2":
		tr := &http2.Transport{TLSClientConfig: tlsConf}
		t.Cleanup(tr.CloseIdleConnections)
		rt = tr
	case "h1":
		tr := &http.Transport{TLSClientConfig: tlsConf, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		t.Cleanup(tr.CloseIdleConnections)
		rt = tr
	case "h3":
		tr := &http3.Transport{TLSClientConfig: tlsConf}
		t.Cleanup(func() { tr.Close() })
		rt = tr
		base = "https://" + l.Addr3().String()
	case "h2c":
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, netw, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, netw, addr)
		}}
		t.Cleanup(tr.CloseIdleConnections)
		rt = tr
		base = "http://" + l.Addr().String()
	case "h1c":
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		rt = tr
		base = "http://" + l.Addr().String()
	default:
		t.Fatalf("unknown protocol %q", proto)
	}
	return dohClient{&http.Client{Transport: rt, Timeout: 5 * time.Second}, base}
}

// dohResult is a response, its body read.
type dohResult struct {
	*http.Response
	body []byte
}

// do sends a request and reads the response.
func (c dohClient) do(t testing.TB, method, pathQuery string, hdr map[string]string, body []byte) dohResult {
	t.Helper()
	req, err := http.NewRequest(method, c.base+pathQuery, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, pathQuery, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, pathQuery, err)
	}
	return dohResult{resp, b}
}

// get sends q with GET (RFC 8484 §4.1) to path.
func (c dohClient) get(t testing.TB, path string, q *dns.Msg) dohResult {
	t.Helper()
	return c.do(t, http.MethodGet, path+"?dns="+dohB64(t, q), map[string]string{"Accept": dnsMessageType}, nil)
}

// post sends q with POST to path.
func (c dohClient) post(t testing.TB, path string, q *dns.Msg) dohResult {
	t.Helper()
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return c.do(t, http.MethodPost, path, map[string]string{"Content-Type": dnsMessageType}, wire)
}

func dohB64(t testing.TB, q *dns.Msg) string {
	t.Helper()
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(wire)
}

// dohDNSReply checks that res is a 200 DNS message and returns it.
func dohDNSReply(t testing.TB, res dohResult) *dns.Msg {
	t.Helper()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d (%q), want 200", res.StatusCode, res.body)
	}
	if ct := res.Header.Get("Content-Type"); ct != dnsMessageType {
		t.Errorf("Content-Type %q", ct)
	}
	m := new(dns.Msg)
	if err := m.Unpack(res.body); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	return m
}

// dohRecording answers like serve and sends a copy of each Request it
// gets to seen, when there is room.
func dohRecording(t testing.TB, serve func(context.Context, *pipeline.Request) (*dns.Msg, error)) (*fakeHandler, chan pipeline.Request) {
	seen := make(chan pipeline.Request, 16)
	tt, _ := t.(*testing.T)
	return &fakeHandler{t: tt, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		select {
		case seen <- *req:
		default:
		}
		return serve(ctx, req)
	}}, seen
}

// dohZoneReply answers every query with the records of zone text, split
// into sections by the prefixes "an:", "ns:" and "ar:", and rcode.
func dohZoneReply(rcode int, records ...string) func(context.Context, *pipeline.Request) (*dns.Msg, error) {
	return func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetRcode(req.Msg, rcode)
		m.RecursionAvailable = true
		for _, r := range records {
			rr := mustRR(r[3:])
			switch r[:3] {
			case "an:":
				m.Answer = append(m.Answer, rr)
			case "ns:":
				m.Ns = append(m.Ns, rr)
			case "ar:":
				m.Extra = append(m.Extra, rr)
			}
		}
		return m, nil
	}
}

// dohWantLocal checks the fields every DoH Request has.
func dohWantLocal(t testing.TB, req pipeline.Request, l *DoH) {
	t.Helper()
	if req.Local != l.Addr() || req.Client.Addr() != l.Addr().Addr() || req.Client.Port() == 0 {
		t.Errorf("Local %v Client %v, want %v and a loopback client", req.Local, req.Client, l.Addr())
	}
	if req.Listener != pipeline.KindDoH || req.MaxSize != dns.MaxMsgSize || req.Received.IsZero() {
		t.Errorf("Listener %v MaxSize %d Received %v", req.Listener, req.MaxSize, req.Received)
	}
}
