package edge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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

// certStore owns the certificates of the encrypted listeners across
// reloads. A certificate source is built once per distinct tls section
// and kept while a listener uses it; each listener reads its source
// through an atomic pointer, so a reload that changes a listener's
// certificate takes effect at its next handshake without rebinding. It
// is used under Server.mu.
type certStore struct {
	log   *slog.Logger
	built map[string]*edgetls.Certs                 // by tls section
	cur   map[string]*atomic.Pointer[edgetls.Certs] // by listener key
	specs map[string]string                         // listener key → tls section key
}

func newCertStore(log *slog.Logger) *certStore {
	return &certStore{
		log:   log,
		built: make(map[string]*edgetls.Certs),
		cur:   make(map[string]*atomic.Pointer[edgetls.Certs]),
	}
}

// certPlan is what a configuration needs of the store: the source of each
// encrypted listener, some of them built for this plan.
type certPlan struct {
	stateDir   string
	byListener map[string]*edgetls.Certs
	bySpec     map[string]*edgetls.Certs
	fresh      []*edgetls.Certs // built by prepare, closed by abort
	ptrs       map[string]*atomic.Pointer[edgetls.Certs]
}

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

func specKey(spec *edgetls.Spec, stateDir string) string {
	b, _ := json.Marshal(struct {
		S   *edgetls.Spec
		Dir string
	}{spec, stateDir})
	return string(b)
}

// prepare builds the sources cfg needs that the store does not have yet.
func (c *certStore) prepare(cfg *Config) (*certPlan, error) {
	p := &certPlan{
		stateDir:   cfg.StateDir,
		byListener: make(map[string]*edgetls.Certs),
		bySpec:     make(map[string]*edgetls.Certs),
		ptrs:       make(map[string]*atomic.Pointer[edgetls.Certs]),
	}
	if p.stateDir == "" {
		p.stateDir = DefaultStateDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), certTimeout)
	defer cancel()
	for _, l := range cfg.Listeners {
		spec := listenerTLS(cfg, l)
		if spec == nil {
			continue
		}
		k := specKey(spec, p.stateDir)
		certs := p.bySpec[k]
		if certs == nil {
			certs = c.built[k]
		}
		if certs == nil {
			var err error
			certs, err = edgetls.Build(ctx, *spec, p.stateDir, c.log)
			if err != nil {
				p.abort()
				return nil, fmt.Errorf("certificate for %s %s: %w", l.Proto, l.Address, err)
			}
			p.fresh = append(p.fresh, certs)
		}
		p.bySpec[k] = certs
		p.byListener[cfg.listenerKey(l)] = certs
	}
	return p, nil
}

// abort closes what prepare built.
func (p *certPlan) abort() {
	for _, certs := range p.fresh {
		certs.Close()
	}
	p.fresh = nil
}

// tlsConfig returns the server configuration for the listener with key
// k: the plan's source's settings, with certificates looked up at each
// handshake through the listener's pointer.
func (c *certStore) tlsConfig(p *certPlan, k string) (*tls.Config, error) {
	certs := p.byListener[k]
	if certs == nil {
		return nil, errors.New("no certificate configured")
	}
	ptr := c.cur[k]
	if ptr == nil {
		ptr = p.ptrs[k]
	}
	if ptr == nil {
		ptr = new(atomic.Pointer[edgetls.Certs])
		ptr.Store(certs)
		p.ptrs[k] = ptr
	}
	conf := certs.ServerConfig(nil)
	conf.Certificates = nil
	conf.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return ptr.Load().GetCertificate(hello)
	}
	return conf, nil
}

// commit makes p the store's state once the configuration it was made for
// is live: listeners see their new sources, and sources nobody uses any
// more are closed. keep reports whether a listener is still open.
func (c *certStore) commit(p *certPlan, keep func(listenerKey string) bool) {
	for k, ptr := range p.ptrs {
		c.cur[k] = ptr
	}
	for k, ptr := range c.cur {
		certs, ok := p.byListener[k]
		if !ok || !keep(k) {
			delete(c.cur, k)
			continue
		}
		ptr.Store(certs)
	}
	used := make(map[*edgetls.Certs]bool)
	for _, certs := range p.byListener {
		used[certs] = true
	}
	for k, certs := range c.built {
		if !used[certs] {
			certs.Close()
			delete(c.built, k)
		}
	}
	for k, certs := range p.bySpec {
		c.built[k] = certs
	}
	p.fresh = nil
}

// caFiles returns the self-signed CA files in use, for the start-up
// summary.
func (c *certStore) caFiles() []string {
	var out []string
	seen := make(map[string]bool)
	for _, certs := range c.built {
		if f := certs.CAFile(); f != "" && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

// close closes every source.
func (c *certStore) close() {
	for k, certs := range c.built {
		certs.Close()
		delete(c.built, k)
	}
}
