package transporttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestServerName is the host name every test leaf certificate carries,
// besides localhost, 127.0.0.1 and ::1.
const TestServerName = "dns.test"

// CA is a throwaway certificate authority and one leaf it signed, for
// encrypted test servers. The leaf is valid for TestServerName,
// localhost, 127.0.0.1 and ::1, from an hour ago for a day. Its fields
// must not be modified.
type CA struct {
	// Pool holds the CA certificate only: the roots a client trusts.
	Pool *x509.CertPool
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Leaf is the server certificate chain (leaf, then CA) and key.
	Leaf tls.Certificate
	// PEM is the CA certificate, PEM-encoded, as a ca_file holds it.
	PEM []byte
}

// NewCA makes a CA and a leaf with fresh ECDSA P-256 keys. Failures fail
// the test.
func NewCA(t testing.TB) *CA {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("new ca: %v", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dnsedge test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("new ca: %v", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("new ca: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("new ca leaf: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: TestServerName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, // a client certificate too (mTLS tests)
		DNSNames:     []string{TestServerName, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("new ca leaf: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("new ca leaf: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &CA{
		Pool: pool,
		Cert: caCert,
		Leaf: tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key, Leaf: leaf},
		PEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}
}

// LeafPin returns the base64 SHA-256 SPKI pin of the leaf.
func (ca *CA) LeafPin() string { return spkiPin(ca.Leaf.Leaf) }

// CAPin returns the base64 SHA-256 SPKI pin of the CA certificate.
func (ca *CA) CAPin() string { return spkiPin(ca.Cert) }

func spkiPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// WritePEM writes the CA certificate to a file in t's temporary
// directory and returns its path.
func (ca *CA) WritePEM(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, ca.PEM, 0o600); err != nil {
		t.Fatalf("write ca file: %v", err)
	}
	return p
}

// ServerTLS returns a server configuration presenting the leaf, offering
// alpn, and counting every handshake (full or resumed) in c.
func (ca *CA) serverTLS(alpn []string, c *counters) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.Leaf},
		NextProtos:   alpn,
		MinVersion:   tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			c.handshakes.Add(1)
			if cs.DidResume {
				c.resumed.Add(1)
			}
			return nil
		},
	}
}
