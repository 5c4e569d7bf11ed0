package admin_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/admin"
)

func hash(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func testConfig() admin.Config {
	return admin.Config{
		Address: "127.0.0.1:0",
		Tokens: []admin.Token{
			{Grant: admin.Grant{ID: "ci", Zones: []string{"Dyn.Example"}, Access: admin.AccessWrite}, SHA256: hash("t-ci")},
			{Grant: admin.Grant{ID: "viewer", Zones: []string{"*"}, Access: admin.AccessRead}, SHA256: hash("t-view")},
			{Grant: admin.Grant{ID: "ops", Zones: []string{"dyn.example."}, Access: admin.AccessAdmin}, SHA256: hash("t-ops")},
		},
		Clients: []admin.Grant{{ID: "robot", Zones: []string{"dyn.example."}, Access: admin.AccessWrite}},
	}
}

// TestGrants: who may read and write which zone.
func TestGrants(t *testing.T) {
	a := admin.NewAuth(testConfig())
	tests := []struct {
		id, zone string
		write    bool
		want     bool
	}{
		{"ci", "dyn.example.", false, true},
		{"ci", "dyn.example.", true, true},
		{"ci", "other.example.", false, false},
		{"ci", "sub.dyn.example.", false, false}, // a grant names zones, not subtrees
		{"viewer", "any.example.", false, true},
		{"viewer", "any.example.", true, false},
		{"robot", "dyn.example.", true, true},
		{"ops", "dyn.example.", true, true}, // admin includes write
		{"ops", "other.example.", false, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %s write=%v", tc.id, tc.zone, tc.write), func(t *testing.T) {
			if got := a.Grant(tc.id).Allows(tc.zone, tc.write); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	for id, want := range map[string]bool{"ci": false, "viewer": false, "robot": false, "ops": true} {
		if got := a.Grant(id).CanOperate(); got != want {
			t.Errorf("%s: CanOperate %v, want %v", id, got, want)
		}
	}
	if a.Grant("nobody") != nil {
		t.Fatal("a grant for an unknown id")
	}
}

// certs makes a CA, a server certificate for 127.0.0.1 and client
// certificates with the common names given, all signed by the CA.
func certs(t *testing.T, names ...string) (pool *x509.CertPool, server tls.Certificate, clients map[string]tls.Certificate) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ip net.IP) tls.Certificate {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		if ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	server = leaf(2, "server", x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	clients = make(map[string]tls.Certificate)
	for i, n := range names {
		clients[n] = leaf(int64(10+i), n, x509.ExtKeyUsageClientAuth, nil)
	}
	return pool, server, clients
}

// TestAuthenticateOverTLS: over a real HTTPS admin listener, a verified
// client certificate of a configured client is that client's grant, one
// of nobody configured is refused, a bearer token works without a
// certificate, and neither gets "no credentials".
func TestAuthenticateOverTLS(t *testing.T) {
	pool, server, clients := certs(t, "robot", "stranger")
	auth := admin.NewAuth(testConfig())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := auth.Authenticate(r)
		switch {
		case err == admin.ErrNoCredentials:
			fmt.Fprint(w, "none")
		case err != nil:
			fmt.Fprint(w, "refused")
		default:
			fmt.Fprint(w, p.ID)
		}
	})
	conf := &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	srv, err := admin.Listen("127.0.0.1:0", conf, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tests := []struct {
		name   string
		cert   string // client certificate's common name; "" for none
		bearer string
		want   string
	}{
		{"configured client certificate", "robot", "", "robot"},
		{"certificate of nobody configured", "stranger", "", "refused"},
		{"bearer token, no certificate", "", "t-ci", "ci"},
		{"bearer token wins over the certificate", "robot", "t-view", "viewer"},
		{"unknown bearer token", "", "t-nope", "refused"},
		{"nothing", "", "", "none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			if tc.cert != "" {
				cc.Certificates = []tls.Certificate{clients[tc.cert]}
			}
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: cc}, Timeout: 5 * time.Second}
			defer c.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodGet, "https://"+srv.Addr().String()+"/", nil)
			if tc.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != tc.want {
				t.Fatalf("got %q, want %q", b, tc.want)
			}
		})
	}
}
