package edge_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// writeCert writes ca's leaf chain and key as PEM files in dir, each
// through a rename so a reader never sees half a file, and returns their
// paths.
func writeCert(t *testing.T, dir string, ca *transporttest.CA) (certFile, keyFile string) {
	t.Helper()
	var chain []byte
	for _, der := range ca.Leaf.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(ca.Leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for name, data := range map[string][]byte{
		certFile: chain,
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	} {
		tmp := name + ".new"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, name); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// startServer runs dnsedge in-process on the whole configuration text
// (listeners included) until the test ends.
func startServer(t *testing.T, config string) *edge.Server {
	t.Helper()
	cfg, err := edge.Parse("test.yaml", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := edge.New(cfg, edge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// dotQuery asks one query on c and fails the test unless it is answered.
func dotQuery(t *testing.T, c *tls.Conn) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("h1.test.example.", dns.TypeA)
	b, _ := q.Pack()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)); err != nil {
		t.Fatalf("write: %v", err)
	}
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		t.Fatalf("read: %v", err)
	}
	reply := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatalf("read: %v", err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(reply); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("reply %v, %v", r, err)
	}
}

// dialTrusting waits (at most 5s) until a DoT handshake to addr verifies
// against ca, which proves the listener serves ca's leaf, and returns the
// connection.
func dialTrusting(t *testing.T, addr string, ca *transporttest.CA) *tls.Conn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", NextProtos: []string{"dot"}})
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listener never served the expected certificate: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCertificateRotation: a certificate replaced on disk is served to the
// next handshake, and so is one a reload names, while connections made
// with the old one keep working. Nothing restarts and no socket is
// rebound.
func TestCertificateRotation(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	dir := t.TempDir()
	first, second, third := transporttest.NewCA(t), transporttest.NewCA(t), transporttest.NewCA(t)
	certFile, keyFile := writeCert(t, dir, first)
	config := func(cert, key string) string {
		return fmt.Sprintf(`listeners:
  - {proto: dot, address: "127.0.0.1:0"}
tls: {cert_file: %q, key_file: %q}
upstreams:
  - {name: up, url: "udp://%s"}
`, cert, key, up.AddrV4())
	}
	srv := startServer(t, config(certFile, keyFile))
	addr := srv.Addrs()["dot"][0].String()

	old := dialTrusting(t, addr, first)
	dotQuery(t, old)

	t.Run("replaced on disk", func(t *testing.T) {
		writeCert(t, dir, second)
		c := dialTrusting(t, addr, second)
		dotQuery(t, c)
		dotQuery(t, old) // the connection made before still works
	})
	t.Run("named by a reload", func(t *testing.T) {
		certFile, keyFile := writeCert(t, t.TempDir(), third)
		cfg, err := edge.Parse("test.yaml", []byte(config(certFile, keyFile)))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		if got := srv.Addrs()["dot"][0].String(); got != addr {
			t.Fatalf("the listener moved from %s to %s", addr, got)
		}
		c := dialTrusting(t, addr, third)
		dotQuery(t, c)
		dotQuery(t, old)
	})
	t.Run("a reload with a broken certificate changes nothing", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pem")
		os.WriteFile(bad, []byte("not a certificate"), 0o600)
		cfg, err := edge.Parse("test.yaml", []byte(config(bad, bad)))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Reload(cfg); err == nil {
			t.Fatal("a reload with a broken certificate succeeded")
		}
		dotQuery(t, dialTrusting(t, addr, third))
	})
}

// TestDoTClientCertificates: a listener with client_auth require serves
// only clients whose certificate its client_ca signed.
func TestDoTClientCertificates(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	server, clients, stranger := transporttest.NewCA(t), transporttest.NewCA(t), transporttest.NewCA(t)
	certFile, keyFile := writeCert(t, t.TempDir(), server)
	srv := startServer(t, fmt.Sprintf(`listeners:
  - proto: dot
    address: "127.0.0.1:0"
    tls: {cert_file: %q, key_file: %q, client_auth: require, client_ca: %q}
upstreams:
  - {name: up, url: "udp://%s"}
`, certFile, keyFile, clients.WritePEM(t), up.AddrV4()))
	addr := srv.Addrs()["dot"][0].String()
	tests := []struct {
		name string
		cert []tls.Certificate
		ok   bool
	}{
		{"no certificate", nil, false},
		{"certificate of another CA", []tls.Certificate{stranger.Leaf}, false},
		{"certificate of the client CA", []tls.Certificate{clients.Leaf}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: server.Pool, ServerName: "localhost",
				NextProtos: []string{"dot"}, Certificates: tt.cert})
			if err == nil {
				defer c.Close()
				// TLS 1.3 reports a refused client certificate on the
				// first read, not in the handshake.
				c.SetDeadline(time.Now().Add(2 * time.Second))
				q := new(dns.Msg)
				q.SetQuestion("h1.test.example.", dns.TypeA)
				b, _ := q.Pack()
				c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
				var n [2]byte
				_, err = io.ReadFull(c, n[:])
			}
			if (err == nil) != tt.ok {
				t.Fatalf("got err %v, want success %v", err, tt.ok)
			}
		})
	}
}

// TestReloadClientAuth: a reload that turns client certificates on for a
// running DoT listener applies to the next connection.
func TestReloadClientAuth(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	server, clients := transporttest.NewCA(t), transporttest.NewCA(t)
	certFile, keyFile := writeCert(t, t.TempDir(), server)
	port := freeTCPPort(t)
	config := func(auth string) string {
		return fmt.Sprintf(`listeners:
  - {proto: dot, address: "127.0.0.1:%d"}
tls: {cert_file: %q, key_file: %q%s}
upstreams:
  - {name: up, url: "udp://%s"}
`, port, certFile, keyFile, auth, up.AddrV4())
	}
	srv := startServer(t, config(""))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ask := func() error {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: server.Pool, ServerName: "localhost", NextProtos: []string{"dot"}})
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		q := new(dns.Msg)
		q.SetQuestion("h1.test.example.", dns.TypeA)
		b, _ := q.Pack()
		c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
		var n [2]byte
		_, err = io.ReadFull(c, n[:])
		return err
	}
	if err := ask(); err != nil {
		t.Fatalf("without client certificates: %v", err)
	}
	cfg, err := parseConfig(config(fmt.Sprintf(", client_auth: require, client_ca: %q", clients.WritePEM(t))))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if err := ask(); err == nil {
		t.Fatal("after turning client certificates on, a client without one was served")
	}
}
