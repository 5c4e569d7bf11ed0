package profile

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

func TestSign(t *testing.T) {
	root := newTestCA(t, "Signing Root")
	now := time.Now()
	inter, interKey := root.leaf(t, "Signing Intermediate", nil, now.Add(-time.Hour), now.Add(time.Hour), true)
	interCA := &testCA{cert: inter, key: interKey}
	signer, signerKey := interCA.leaf(t, "Profile Signer", nil, now.Add(-time.Hour), now.Add(time.Hour), false)
	direct, directKey := root.leaf(t, "Direct Signer", nil, now.Add(-time.Hour), now.Add(time.Hour), false)
	_, otherKey := root.leaf(t, "Other", nil, now.Add(-time.Hour), now.Add(time.Hour), false)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "RSA Signer"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
	}, root.cert, &rsaKey.PublicKey, root.key)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert, err := x509.ParseCertificate(rsaDER)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})

	a := Apple{DoT: "dns.example", UUIDSeed: "s"}
	content, err := a.Build(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name             string
		cert, key, chain []byte
		wantErr          string
	}{
		{"signed by the root", certPEM(direct), keyPEM(t, directKey), nil, ""},
		{"rsa key in PKCS #1", certPEM(rsaCert), rsaPEM, nil, ""},
		{"with an intermediate in the chain file", certPEM(signer), keyPEM(t, signerKey), certPEM(inter), ""},
		{"with the intermediate after the certificate", append(certPEM(signer), certPEM(inter)...), keyPEM(t, signerKey), nil, ""},
		{"key of another certificate", certPEM(direct), keyPEM(t, otherKey), nil, "does not belong to the certificate"},
		{"chain that did not issue it", certPEM(direct), keyPEM(t, directKey), certPEM(inter), "was not issued by"},
		{"no certificate", nil, keyPEM(t, directKey), nil, "no PEM CERTIFICATE"},
		{"no key", certPEM(direct), certPEM(direct), nil, "no PEM PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := LoadSigner(tt.cert, tt.key, tt.chain)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrSigner) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadSigner: %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			der, err := s.Sign(content)
			if err != nil {
				t.Fatal(err)
			}
			p7, err := pkcs7.Parse(der)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if err := p7.VerifyWithChain(root.pool()); err != nil {
				t.Fatalf("verify against the root: %v", err)
			}
			if !bytes.Equal(p7.Content, content) {
				t.Fatal("the signed content is not the profile")
			}
			if alg := p7.Signers[0].DigestAlgorithm.Algorithm; !alg.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
				t.Errorf("digest algorithm %v, want SHA-256", alg)
			}
			if got := p7.GetOnlySigner(); got == nil || !got.Equal(s.Cert) {
				t.Fatalf("signer %v, want %v", got, s.Cert.Subject)
			}
			if err := p7.VerifyWithChain(x509.NewCertPool()); err == nil {
				t.Fatal("verified without the root: the check cannot fail")
			}
		})
	}
}
