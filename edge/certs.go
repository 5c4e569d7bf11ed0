package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	edgetls "github.com/dnsedge/dnsedge/tls"
)

// DefaultStateDir returns where dnsedge keeps what it makes for itself
// when the configuration names no state_dir: $STATE_DIRECTORY (set by
// systemd's StateDirectory=), else $XDG_STATE_HOME/dnsedge, else
// ~/.local/state/dnsedge, else /var/lib/dnsedge.
func DefaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return filepath.SplitList(d)[0]
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "dnsedge")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" && h != "/" {
		return filepath.Join(h, ".local", "state", "dnsedge")
	}
	return "/var/lib/dnsedge"
}

// certTimeout bounds building the certificates of a configuration: ACME
// issuance happens then.
const certTimeout = 2 * time.Minute

// certKey identifies a certificate source in the pool: its tls section
// and the state directory it keeps what it makes in. Listeners that name
// the same section share one source.
type certKey struct{ spec, stateDir string }

// listenerTLS returns the TLS section that applies to l, nil for
// cleartext listeners.
func listenerTLS(cfg *Config, l ListenerSpec) *edgetls.Spec {
	if !l.encrypted() {
		return nil
	}
	if l.TLS != nil {
		return l.TLS
	}
	return cfg.TLS
}

// stateDir returns the configuration's state directory.
func (c *Config) stateDir() string {
	if c.StateDir != "" {
		return c.StateDir
	}
	return DefaultStateDir()
}

// takeCerts takes the certificate source of the encrypted listener l from
// the pool, building it (ACME issuance included) when no listener uses its
// tls section yet.
func takeCerts(ctx context.Context, h *hold, cfg *Config, l ListenerSpec, log *slog.Logger) (*edgetls.Certs, error) {
	spec := listenerTLS(cfg, l)
	dir := cfg.stateDir()
	certs, _, err := take(h, certKey{spec: jsonKey(spec), stateDir: dir}, func() (*edgetls.Certs, func() error, error) {
		ctx, cancel := context.WithTimeout(ctx, certTimeout)
		defer cancel()
		c, err := edgetls.Build(ctx, *spec, dir, log)
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	})
	if err != nil {
		return nil, fmt.Errorf("certificate for %s %s: %w", l.Proto, l.Address, err)
	}
	return certs, nil
}

// serverTLS returns the server configuration of a listener whose source
// is read through ptr at each handshake, so that a reload that changes
// the listener's certificate takes effect at its next handshake without
// rebinding.
func serverTLS(ptr *atomic.Pointer[edgetls.Certs]) *tls.Config {
	conf := ptr.Load().ServerConfig(nil)
	conf.Certificates = nil
	conf.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return ptr.Load().GetCertificate(hello)
	}
	return conf
}

// caFiles returns the self-signed CA files in use, for the start-up
// summary.
func (s *Server) caFiles() []string {
	var out []string
	each(s.pool, func(_ any, certs *edgetls.Certs) {
		if f := certs.CAFile(); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	})
	slices.Sort(out)
	return out
}
