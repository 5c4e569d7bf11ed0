package edgetls

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fileCertFixture is a FileCert serving on 127.0.0.1, with a CA that
// signs every certificate the test writes.
type fileCertFixture struct {
	ca                *issued
	certFile, keyFile string
	clock             *fakeClock
	logs              *logBuffer
	fc                *FileCert
	addr              string
}

func newFileCertFixture(t *testing.T) *fileCertFixture {
	t.Helper()
	dir := t.TempDir()
	f := &fileCertFixture{
		ca:       issue(t, nil, "test CA", true),
		certFile: filepath.Join(dir, "cert.pem"),
		keyFile:  filepath.Join(dir, "key.pem"),
		clock:    &fakeClock{now: time.Unix(1_700_000_000, 0)},
	}
	first := issue(t, f.ca, "127.0.0.1", false)
	writeFile(t, f.certFile, first.certPEM())
	writeFile(t, f.keyFile, first.keyPEM(t))
	var log *slog.Logger
	log, f.logs = testLogger(t, slog.LevelInfo)
	fc, err := NewFileCert(f.certFile, f.keyFile, log, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	f.fc = fc
	f.addr = serveTLS(t, &tls.Config{GetCertificate: fc.GetCertificate})
	return f
}

// handshake dials the server and returns the open connection and the
// serial of the certificate it served.
func (f *fileCertFixture) handshake(t *testing.T) (*tls.Conn, string) {
	t.Helper()
	conn, err := dialTLS(t, f.addr, &tls.Config{RootCAs: f.ca.pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := echo(conn); err != nil {
		t.Fatalf("echo on new connection: %v", err)
	}
	return conn, peerSerial(conn)
}

func TestFileCertReload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		replace func(t *testing.T, name string, data []byte)
	}{
		{name: "rename over", replace: renameOver},
		{name: "rewrite in place", replace: writeFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFileCertFixture(t)
			old, oldSerial := f.handshake(t)

			// A longer name makes the file size change, so the rewrite is
			// seen even when the file system's mtime granularity is coarse.
			next := issueNamed(t, f.ca, "127.0.0.1", "replacement-with-a-longer-common-name", false)
			tt.replace(t, f.keyFile, next.keyPEM(t))
			tt.replace(t, f.certFile, next.certPEM())

			// The clock has not moved: no stat, the old certificate stays.
			if _, serial := f.handshake(t); serial != oldSerial {
				t.Fatalf("certificate changed before the stat interval passed")
			}
			f.clock.Advance(statInterval)
			if _, serial := f.handshake(t); serial != next.cert.SerialNumber.String() {
				t.Fatalf("after replacement got serial %s, want %s", serial, next.cert.SerialNumber)
			}
			if err := echo(old); err != nil {
				t.Fatalf("connection opened before the reload: %v", err)
			}
			if peerSerial(old) != oldSerial {
				t.Fatalf("old connection's certificate changed")
			}
			if n := f.logs.count("reloaded tls certificate"); n != 1 {
				t.Errorf("logged %d reloads, want 1", n)
			}
		})
	}
}

func TestFileCertBadReplacement(t *testing.T) {
	t.Parallel()
	otherKey := issue(t, nil, "other", false).keyPEM(t)
	tests := []struct {
		name    string
		breakIt func(t *testing.T, f *fileCertFixture)
	}{
		{name: "garbage cert", breakIt: func(t *testing.T, f *fileCertFixture) {
			renameOver(t, f.certFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"))
		}},
		{name: "key does not match", breakIt: func(t *testing.T, f *fileCertFixture) {
			renameOver(t, f.keyFile, otherKey)
		}},
		{name: "empty cert", breakIt: func(t *testing.T, f *fileCertFixture) { writeFile(t, f.certFile, nil) }},
		{name: "cert removed", breakIt: func(t *testing.T, f *fileCertFixture) {
			if err := os.Rename(f.certFile, f.certFile+".gone"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFileCertFixture(t)
			_, oldSerial := f.handshake(t)
			tt.breakIt(t, f)
			for range 3 {
				f.clock.Advance(statInterval)
				if _, serial := f.handshake(t); serial != oldSerial {
					t.Fatalf("served serial %s after a bad replacement, want the old %s", serial, oldSerial)
				}
			}
			if n := f.logs.count("level=WARN"); n != 1 {
				t.Errorf("logged %d warnings for one bad change, want 1", n)
			}

			fixed := issue(t, f.ca, "127.0.0.1", false)
			renameOver(t, f.keyFile, fixed.keyPEM(t))
			renameOver(t, f.certFile, fixed.certPEM())
			f.clock.Advance(statInterval)
			if _, serial := f.handshake(t); serial != fixed.cert.SerialNumber.String() {
				t.Fatalf("after the fix got serial %s, want %s", serial, fixed.cert.SerialNumber)
			}
		})
	}
}

func TestFileCertChain(t *testing.T) {
	t.Parallel()
	root := issue(t, nil, "root", true)
	inter := issue(t, root, "intermediate", true)
	leaf := issue(t, inter, "127.0.0.1", false)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, append(leaf.certPEM(), inter.certPEM()...))
	writeFile(t, keyFile, leaf.keyPEM(t))

	log, _ := testLogger(t, slog.LevelInfo)
	c, err := Build(context.Background(), Spec{CertFile: certFile, KeyFile: keyFile}, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.CAFile() != "" {
		t.Errorf("CAFile() = %q for files, want empty", c.CAFile())
	}
	addr := serveTLS(t, c.ServerConfig([]string{"dot"}))
	conn, err := dialTLS(t, addr, &tls.Config{RootCAs: root.pool(), ServerName: "127.0.0.1", NextProtos: []string{"dot"}})
	if err != nil {
		t.Fatalf("handshake trusting only the root: %v", err)
	}
	st := conn.ConnectionState()
	if len(st.PeerCertificates) != 2 || st.NegotiatedProtocol != "dot" || st.Version < tls.VersionTLS12 {
		t.Errorf("got %d certificates, protocol %q, version %x", len(st.PeerCertificates), st.NegotiatedProtocol, st.Version)
	}
}

func TestBuildFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := issue(t, nil, "127.0.0.1", false)
	other := issue(t, nil, "127.0.0.1", false)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	otherKey, garbage := filepath.Join(dir, "other-key.pem"), filepath.Join(dir, "garbage.pem")
	writeFile(t, certFile, good.certPEM())
	writeFile(t, keyFile, good.keyPEM(t))
	writeFile(t, otherKey, other.keyPEM(t))
	writeFile(t, garbage, []byte("hello"))
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name    string
		spec    Spec
		noState bool     // pass an empty state directory
		want    []string // substrings of the error
	}{
		{name: "missing cert", spec: Spec{CertFile: missing, KeyFile: keyFile}, want: []string{missing, "no such file"}},
		{name: "missing key", spec: Spec{CertFile: certFile, KeyFile: missing}, want: []string{missing}},
		{name: "mismatched key", spec: Spec{CertFile: certFile, KeyFile: otherKey}, want: []string{certFile, otherKey, "does not match"}},
		{name: "garbage cert", spec: Spec{CertFile: garbage, KeyFile: keyFile}, want: []string{garbage}},
		{name: "missing client ca", spec: Spec{CertFile: certFile, KeyFile: keyFile, ClientAuth: "require", ClientCA: missing},
			want: []string{"client_ca", missing}},
		{name: "client ca without certificates", spec: Spec{CertFile: certFile, KeyFile: keyFile, ClientAuth: "require", ClientCA: garbage},
			want: []string{"client_ca", garbage, "no PEM certificate"}},
		{name: "self-signed without state dir", spec: Spec{SelfSigned: true}, noState: true, want: []string{"state directory"}},
		{name: "invalid spec", spec: Spec{KeyFile: keyFile}, want: []string{"validate tls", "key_file: set without cert_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log, _ := testLogger(t, slog.LevelInfo)
			state := t.TempDir()
			if tt.noState {
				state = ""
			}
			c, err := Build(context.Background(), tt.spec, state, log)
			if err == nil {
				c.Close()
				t.Fatal("Build succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
