package doqclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"

	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/doqclient"
)

// TestExchange runs the client against the DoQ listener: the wire ID is
// 0, the caller's ID comes back, the caller's message is not changed, and
// a canceled exchange resets its stream without hurting the connection.
func TestExchange(t *testing.T) {
	t.Parallel()
	var wireIDs atomic.Int32
	h := pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if req.Msg.Id != 0 {
			wireIDs.Add(1)
		}
		if req.Question().Name == "slow.example." {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: req.Question().Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		return m, nil
	})
	server, roots := testCert(t)
	l, err := listen.ListenDoQ(listen.Config{
		Addr:    netip.MustParseAddrPort("127.0.0.1:0"),
		Handler: func() pipeline.Handler { return h },
		TLS:     server,
		Limits:  listen.Limits{QueryTimeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	defer func() {
		l.Close()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := doqclient.Dial(ctx, l.Addr().String(), doqclient.Config{
		TLS:     &tls.Config{RootCAs: roots, ServerName: "dns.test"},
		Network: "udp4",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := new(dns.Msg)
	q.SetQuestion("example.org.", dns.TypeA)
	q.Id = 999
	r, err := c.Exchange(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if r.Id != 999 || q.Id != 999 || len(r.Answer) != 1 {
		t.Errorf("reply ID %d, query ID %d after, %d answers", r.Id, q.Id, len(r.Answer))
	}
	if n := wireIDs.Load(); n != 0 {
		t.Errorf("%d queries reached the server with a non-zero ID", n)
	}

	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	slow := new(dns.Msg)
	slow.SetQuestion("slow.example.", dns.TypeA)
	if _, err := c.Exchange(short, slow); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("canceled exchange: %v, want a deadline error", err)
	}
	if _, err := c.Exchange(ctx, q); err != nil {
		t.Errorf("exchange after a canceled one: %v", err)
	}
}

// TestDialErrors checks what Dial refuses.
func TestDialErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := doqclient.Dial(ctx, "127.0.0.1:853", doqclient.Config{}); err == nil {
		t.Error("dial without TLS succeeded")
	}
	if _, err := doqclient.Dial(ctx, "[::1]:853", doqclient.Config{TLS: &tls.Config{}, Network: "udp4"}); err == nil {
		t.Error("dial of an IPv6 address over udp4 succeeded")
	}
	// Nothing listens there: the handshake times out.
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, err = doqclient.Dial(ctx, pc.LocalAddr().String(), doqclient.Config{
		TLS:  &tls.Config{ServerName: "dns.test"},
		QUIC: &quic.Config{HandshakeIdleTimeout: 100 * time.Millisecond},
	})
	if err == nil {
		t.Error("dial of a silent address succeeded")
	}
}

// testCert returns a server config for "dns.test" and the pool that
// trusts it.
func testCert(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dns.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"dns.test"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, roots
}
