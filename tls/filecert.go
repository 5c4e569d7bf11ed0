package edgetls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// statInterval is the least time between two checks of the files.
const statInterval = time.Second

var _ Source = (*FileCert)(nil)

// FileCert serves a certificate and key read from PEM files and reloads
// them when they change on disk. The certificate file may hold a chain:
// the leaf first, then its intermediates.
//
// GetCertificate stats both files at most once per statInterval and
// reloads them when the modification time, size or inode of either
// changed, so both an in-place rewrite and the write-then-rename pattern
// are seen. A reload only affects later handshakes: open connections keep
// going. A reload that fails (unreadable file, bad PEM, key not matching)
// keeps serving the previous certificate, logs one warning per change
// and is retried at the next check.
//
// FileCert is safe for concurrent use and starts no goroutines.
type FileCert struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	loaded    [2]fileStamp // stamps of the files behind cert
	failed    [2]fileStamp // stamps of the last failed reload, if warned
	warned    bool         // a warning was logged for failed
	lastCheck time.Time
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	modTime time.Time
	size    int64
	inode   uint64
}

// NewFileCert loads certFile and keyFile and returns a FileCert serving
// them. The error names the file that could not be read or parsed. now is
// the clock used to limit stats; nil means time.Now. log must not be nil.
func NewFileCert(certFile, keyFile string, log *slog.Logger, now func() time.Time) (*FileCert, error) {
	if now == nil {
		now = time.Now
	}
	f := &FileCert{certFile: certFile, keyFile: keyFile, log: log, now: now}
	stamps, err := f.stat()
	if err != nil {
		return nil, err
	}
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	f.cert, f.loaded, f.lastCheck = cert, stamps, now()
	return f, nil
}

// GetCertificate returns the current certificate, reloading the files
// first when they changed and the last check is older than statInterval.
// It never fails once NewFileCert succeeded.
func (f *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if now.Sub(f.lastCheck) < statInterval && !now.Before(f.lastCheck) {
		return f.cert, nil
	}
	f.lastCheck = now
	f.maybeReload()
	return f.cert, nil
}

// maybeReload reloads the files if their stamps changed. f.mu is held.
func (f *FileCert) maybeReload() {
	stamps, err := f.stat()
	if err == nil && stamps == f.loaded {
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = loadKeyPair(f.certFile, f.keyFile)
	}
	if err != nil {
		// stamps is zero when a stat failed; a missing file that stays
		// missing is warned about once.
		if !f.warned || stamps != f.failed {
			f.failed, f.warned = stamps, true
			f.log.Warn("reload tls certificate failed, serving the previous one",
				"cert_file", f.certFile, "key_file", f.keyFile, "err", err)
		}
		return
	}
	f.cert, f.loaded, f.warned = cert, stamps, false
	f.log.Info("reloaded tls certificate", "cert_file", f.certFile,
		"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
}

func (f *FileCert) stat() ([2]fileStamp, error) {
	var stamps [2]fileStamp
	for i, name := range []string{f.certFile, f.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return [2]fileStamp{}, fmt.Errorf("stat %s: %w", name, err)
		}
		stamps[i] = fileStamp{modTime: fi.ModTime(), size: fi.Size(), inode: inodeOf(fi)}
	}
	return stamps, nil
}

// keyError is an error of loadKeyPair with the key of the Spec field at
// fault; its message is the error's alone.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// loadKeyPair reads and parses a certificate (chain) and its key; the
// error names the file at fault and is a *keyError.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, &keyError{"cert_file", fmt.Errorf("read certificate: %w", err)}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, &keyError{"key_file", fmt.Errorf("read key: %w", err)}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &keyError{"cert_file", fmt.Errorf("load certificate %s with key %s: %w", certFile, keyFile, err)}
	}
	if cert.Leaf == nil {
		return nil, &keyError{"cert_file", fmt.Errorf("load certificate %s: %w", certFile, errors.New("no leaf certificate"))}
	}
	return &cert, nil
}
