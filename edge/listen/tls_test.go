package listen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// testPKI is a CA and a leaf it signed for "dns.test", "*.dns.test",
// 127.0.0.1 and ::1, made once per test binary.
type testPKI struct {
	server *tls.Config    // serves the leaf
	roots  *x509.CertPool // trusts the CA
}

var testPKIOnce = sync.OnceValues(newTestPKI)

// testTLS returns the test PKI, failing t if it cannot be made.
func testTLS(t testing.TB) testPKI {
	t.Helper()
	p, err := testPKIOnce()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// clientTLS returns a client config trusting the test CA that asks for
// serverName (the SNI) and verifies the leaf against "dns.test".
func (p testPKI) clientTLS(serverName string, alpn ...string) *tls.Config {
	return &tls.Config{RootCAs: p.roots, ServerName: serverName, NextProtos: alpn}
}

func newTestPKI() (testPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testPKI{}, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dnsedge listen test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return testPKI{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return testPKI{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testPKI{}, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "dns.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"dns.test", "*.dns.test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return testPKI{}, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	return testPKI{
		server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		roots:  roots,
	}, nil
}
