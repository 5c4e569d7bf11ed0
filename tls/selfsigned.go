package edgetls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Lifetimes of the self-signed certificates. The leaf stays within the
// 398 days browsers accept and is replaced when fewer than
// selfSignedRenewBefore remain.
const (
	selfSignedCAValidity   = 10 * 365 * 24 * time.Hour
	selfSignedLeafValidity = 397 * 24 * time.Hour
	selfSignedRenewBefore  = 30 * 24 * time.Hour
)

// selfSigned names the files of a self-signed CA and leaf in one
// directory.
type selfSigned struct {
	dir                        string
	caFile, caKeyFile          string
	certFile, keyFile          string
	caGenerated, leafGenerated bool // set by ensure, for logs and tests
	caNotAfter, leafNotAfter   time.Time
}

func newSelfSigned(dir string) *selfSigned {
	return &selfSigned{
		dir:       dir,
		caFile:    filepath.Join(dir, "ca.pem"),
		caKeyFile: filepath.Join(dir, "ca-key.pem"),
		certFile:  filepath.Join(dir, "cert.pem"),
		keyFile:   filepath.Join(dir, "key.pem"),
	}
}

// ensure makes sure that dir holds a usable CA (ECDSA P-256, CA:TRUE,
// keyCertSign) and a leaf it signed (serverAuth, SANs from hosts). Files
// that parse, match and are valid for long enough are kept, so clients
// that trust ca.pem keep trusting the server across restarts; the leaf is
// replaced when it does not cover every host or expires within
// selfSignedRenewBefore; the CA only when it is unusable or would expire
// before a new leaf.
func (s *selfSigned) ensure(hosts []string, now time.Time) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create self-signed directory: %w", err)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return fmt.Errorf("restrict self-signed directory: %w", err)
	}
	s.caGenerated, s.leafGenerated = false, false

	ca, caKey, err := loadCertKey(s.caFile, s.caKeyFile)
	if err != nil || !usableCA(ca, now) {
		ca, caKey, err = generateCA(now)
		if err != nil {
			return err
		}
		if err := writeCertKey(s.caFile, s.caKeyFile, ca, caKey); err != nil {
			return err
		}
		s.caGenerated = true
	}
	s.caNotAfter = ca.NotAfter

	leaf, _, err := loadCertKey(s.certFile, s.keyFile)
	if s.caGenerated || err != nil || !usableLeaf(leaf, ca, hosts, now) {
		leaf, key, err := generateLeaf(ca, caKey, hosts, now)
		if err != nil {
			return err
		}
		if err := writeCertKey(s.certFile, s.keyFile, leaf, key); err != nil {
			return err
		}
		s.leafGenerated = true
		s.leafNotAfter = leaf.NotAfter
		return nil
	}
	s.leafNotAfter = leaf.NotAfter
	return nil
}

// log reports what ensure did.
func (s *selfSigned) log(log *slog.Logger) {
	if s.caGenerated {
		log.Warn("generated a new self-signed tls CA; clients must trust it",
			"ca_file", s.caFile, "not_after", s.caNotAfter)
	}
	if s.leafGenerated {
		log.Info("generated a self-signed tls certificate", "cert_file", s.certFile, "not_after", s.leafNotAfter)
	}
}

func usableCA(ca *x509.Certificate, now time.Time) bool {
	return ca.IsCA && ca.KeyUsage&x509.KeyUsageCertSign != 0 &&
		!now.Before(ca.NotBefore) && ca.NotAfter.After(now.Add(selfSignedLeafValidity))
}

func usableLeaf(leaf, ca *x509.Certificate, hosts []string, now time.Time) bool {
	if leaf.CheckSignatureFrom(ca) != nil || now.Before(leaf.NotBefore) ||
		!leaf.NotAfter.After(now.Add(selfSignedRenewBefore)) {
		return false
	}
	for _, h := range hosts {
		if strings.HasPrefix(h, "*.") {
			// VerifyHostname takes names, not patterns.
			if !slices.Contains(leaf.DNSNames, h) {
				return false
			}
			continue
		}
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func generateCA(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate self-signed CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"dnsedge"}, CommonName: "dnsedge self-signed CA " + serial.Text(16)[:8]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create self-signed CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse self-signed CA: %w", err)
	}
	return ca, key, nil
}

func generateLeaf(ca *x509.Certificate, caKey crypto.Signer, hosts []string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate self-signed leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(selfSignedLeafValidity)
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"dnsedge"}, CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create self-signed leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse self-signed leaf: %w", err)
	}
	return leaf, key, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// loadCertKey reads a PEM certificate and its matching private key.
func loadCertKey(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	pair, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("load key %s: %w", keyFile, errors.New("not a signing key"))
	}
	return pair.Leaf, key, nil
}

// writeCertKey writes the key (mode 0600) then the certificate (0644),
// each through a temporary file renamed into place.
func writeCertKey(certFile, keyFile string, cert *x509.Certificate, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key for %s: %w", keyFile, err)
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
