package profile

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// Signer signs profiles: a certificate, its private key and the
// intermediates between it and a root the device trusts.
type Signer struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // issuer first; may be empty
}

// ErrSigner is wrapped by every problem LoadSigner finds.
var ErrSigner = errors.New("bad signing identity")

// LoadSigner reads a signer from PEM: certPEM holds the signing
// certificate (further certificates in it are taken as the chain),
// keyPEM its private key (PKCS #8, PKCS #1 RSA or SEC 1 EC), and chainPEM,
// which may be empty, intermediates. It checks that the key belongs to
// the certificate and that each chain certificate issued the one before.
func LoadSigner(certPEM, keyPEM, chainPEM []byte) (*Signer, error) {
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrSigner, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: certificate: no PEM CERTIFICATE block", ErrSigner)
	}
	chain, err := parseCerts(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: chain: %v", ErrSigner, err)
	}
	s := &Signer{Cert: certs[0], Chain: append(certs[1:], chain...)}
	if s.Key, err = parseKey(keyPEM); err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrSigner, err)
	}
	pub, ok := s.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(s.Cert.PublicKey) {
		return nil, fmt.Errorf("%w: the key does not belong to the certificate %q", ErrSigner, s.Cert.Subject)
	}
	child := s.Cert
	for _, c := range s.Chain {
		if err := child.CheckSignatureFrom(c); err != nil {
			return nil, fmt.Errorf("%w: chain: %q was not issued by %q (give the chain issuer first): %v", ErrSigner, child.Subject, c.Subject, err)
		}
		child = c
	}
	return s, nil
}

// Sign returns a DER CMS SignedData (RFC 5652) that holds content as its
// encapsulated content (not detached), signed with SHA-256 over signed
// attributes, with the signer's certificate and chain: the form Apple
// devices install as a signed profile and `openssl smime -verify` reads.
func (s *Signer) Sign(content []byte) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, fmt.Errorf("sign the profile: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(s.Cert, s.Key, s.Chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("sign the profile: %w", err)
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("sign the profile: %w", err)
	}
	return der, nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(data)
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("not PEM")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
		rest = bytes.TrimSpace(rest)
	}
	return certs, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM PRIVATE KEY block")
		}
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			switch k := k.(type) {
			case *rsa.PrivateKey:
				return k, nil
			case *ecdsa.PrivateKey:
				return k, nil
			default:
				return nil, fmt.Errorf("a %T key; profiles are signed with RSA or ECDSA", k)
			}
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		}
	}
}
