package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/consul"
	"github.com/dnsedge/dnsedge/edge/records"
	"github.com/dnsedge/dnsedge/edge/records/consulstore"
	"github.com/dnsedge/dnsedge/internal/field"
	edgetls "github.com/dnsedge/dnsedge/tls"
)

// The admin listener serves the records API of the generation in force,
// the way the metrics endpoint serves its metrics: the listener is a part
// of the front (kept across reloads while its address and scheme stay),
// what it serves and who may call it follow the generation. The records
// Manager lives in the pool under the state directory, so that a reload
// never loads the journals twice; the zone middleware follows it.

// adminGen is what a generation serves on the admin and webhook
// listeners; nil when the configuration has no admin section.
type adminGen struct {
	api     http.Handler
	webhook http.Handler // nil without records.webhook
	tls     *tls.Config  // nil without admin.tls
}

// Keys of the admin parts in the pool.
type (
	// recordsKey identifies the records Manager by its directory: one
	// Manager, and so one writer, per journal whatever a reload changes.
	// With store: consul, also by the agent and prefix.
	recordsKey struct{ dir, consul string }
	adminKey   struct {
		address string
		tls     bool
	}
	webhookKey struct{ address string }
)

// adminEndpoint and webhookEndpoint are the admin and webhook listeners
// in the pool.
type (
	adminEndpoint   struct{ *admin.Server }
	webhookEndpoint struct{ *admin.Server }
)

// completeAdmin fills the defaults of the admin and records sections.
func (c *Config) completeAdmin() {
	if c.Admin != nil {
		a := c.Admin.WithDefaults()
		c.Admin = &a
	}
	c.Records = c.Records.WithDefaults()
}

// validateAdmin checks the admin and records sections and what ties them
// to the rest: API zones and the webhook need the admin section, the
// webhook's grant must be one of it with write access, and no two HTTP
// endpoints share an address.
func (c *Config) validateAdmin() []error {
	var errs []error
	if c.Admin != nil {
		errs = append(errs, field.Prefix("admin", c.Admin.Validate()))
	}
	errs = append(errs, field.Prefix("records", c.Records.Validate()))
	for i, z := range c.Zone.Zones {
		if z.API && c.Admin == nil {
			errs = append(errs, field.Errorf(field.Join(field.Index("zones", i), "api"), "API zones are changed through the admin listener: add an admin section"))
		}
	}
	if c.Records.Store == records.StoreConsul && !c.Consul.On() {
		errs = append(errs, field.Errorf("records.store", "store: consul keeps the zones in Consul KV: set consul.address"))
	}
	if w := c.Records.Webhook; w != nil {
		switch {
		case c.Admin == nil:
			errs = append(errs, field.Errorf("records.webhook", "the webhook acts as a grant of the admin section: add one"))
		case w.Grant != "":
			p := admin.NewAuth(*c.Admin).Grant(w.Grant)
			if p == nil {
				errs = append(errs, field.Errorf("records.webhook.grant", "no token or client %q in the admin section", w.Grant))
			} else if !p.CanWrite() {
				errs = append(errs, field.Errorf("records.webhook.grant", "grant %q is read-only: ExternalDNS changes records", w.Grant))
			}
		}
		if c.Admin != nil && sameAddr(w.Address, c.Admin.Address) {
			errs = append(errs, field.Errorf("records.webhook.address", "%s is the admin listener's address", w.Address))
		}
		if sameAddr(w.Address, c.Metrics.Address) {
			errs = append(errs, field.Errorf("records.webhook.address", "%s is the metrics address", w.Address))
		}
	}
	if c.Admin != nil && sameAddr(c.Admin.Address, c.Metrics.Address) {
		errs = append(errs, field.Errorf("admin.address", "%s is the metrics address", c.Admin.Address))
	}
	return errs
}

// sameAddr reports whether a and b are the same ip:port, port 0 aside.
func sameAddr(a, b string) bool {
	x, err1 := netip.ParseAddrPort(a)
	y, err2 := netip.ParseAddrPort(b)
	return err1 == nil && err2 == nil && x.Port() != 0 && x == y
}

// checkAdminFiles loads the certificate, key and CA files of the admin
// listener's tls section, for CheckFiles.
func (c *Config) checkAdminFiles() error {
	if c.Admin == nil || c.Admin.TLS == nil {
		return nil
	}
	return field.Prefix("admin.tls", c.Admin.TLS.CheckFiles())
}

// recordsDir is where the records store and audit log are kept.
func (c *Config) recordsDir() string { return filepath.Join(c.stateDir(), "records") }

// takeRecords takes the records Manager from the pool and makes it keep
// the configuration's API zones.
func takeRecords(g *generation, d buildDeps) (*records.Manager, error) {
	cfg := g.cfg
	key := recordsKey{dir: cfg.recordsDir()}
	if cfg.Records.Store == records.StoreConsul {
		key.consul = recordsConsulSpec(cfg)
	}
	var kv *consulstore.Store
	m, _, err := take(g.parts, key, func() (*records.Manager, func() error, error) {
		if cfg.Records.Store == records.StoreConsul {
			client, err := consul.NewClient(cfg.Consul)
			if err != nil {
				return nil, nil, err
			}
			kv = consulstore.New(client, cfg.Records.ConsulPrefix, consulstore.Options{Log: d.log})
			m, err := records.OpenStore(cfg.recordsDir(), kv, d.log)
			if err != nil {
				return nil, nil, err
			}
			return m, m.Close, nil
		}
		m, err := records.Open(cfg.recordsDir(), cfg.Records.CompactAfter, d.log)
		if err != nil {
			return nil, nil, err
		}
		return m, m.Close, nil
	})
	if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	if err := m.Ensure(cfg.Zone.APIOrigins()); err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	if kv != nil {
		// Zones are loaded: from now on the changes of other instances
		// are handed to m.
		kv.Follow(m, cfg.Consul.WithDefaults().FirstWait)
	}
	if err := m.Register(g.metrics); err != nil {
		return nil, err
	}
	// Set while the generation builds: a reload that fails afterwards
	// leaves the new value in force, which changes only when journals
	// are folded into snapshots, never what they hold.
	m.SetCompactAfter(cfg.Records.CompactAfter)
	return m, nil
}

// recordsConsulSpec is what a Consul records store is built from: how to
// reach the agent and the prefix.
func recordsConsulSpec(cfg *Config) string {
	conn := struct {
		Address, TokenFile, Prefix string
		TLS                        consul.TLSConfig
	}{cfg.Consul.Address, cfg.Consul.TokenFile, cfg.Records.ConsulPrefix, cfg.Consul.TLS}
	return jsonKey(conn) + fileStamp(cfg.Consul.TokenFile)
}

// buildAdmin makes what the generation serves on the admin listener.
func buildAdmin(ctx context.Context, g *generation, d buildDeps) error {
	cfg := g.cfg
	if cfg.Admin == nil {
		return nil
	}
	m, err := takeRecords(g, d)
	if err != nil {
		return err
	}
	auth := admin.NewAuth(*cfg.Admin)
	origins := cfg.Zone.APIOrigins()
	ag := &adminGen{}
	mux := http.NewServeMux()
	records.NewHandler(m, origins, auth, cfg.Records).Register(mux)
	registerDrills(mux, auth, cfg, d)
	if d.ops != nil {
		d.ops(mux, auth)
	}
	ag.api = mux
	if w := cfg.Records.Webhook; w != nil {
		wm := http.NewServeMux()
		records.NewWebhook(m, origins, auth.Grant(w.Grant), cfg.Records).Register(wm)
		ag.webhook = wm
	}
	if spec := cfg.Admin.TLS; spec != nil {
		dir := cfg.stateDir()
		certs, _, err := take(g.parts, certKey{spec: jsonKey(spec), stateDir: dir}, func() (*edgetls.Certs, func() error, error) {
			ctx, cancel := context.WithTimeout(ctx, certTimeout)
			defer cancel()
			c, err := edgetls.Build(ctx, *spec, dir, d.log)
			if err != nil {
				return nil, nil, err
			}
			return c, c.Close, nil
		})
		if err != nil {
			return fmt.Errorf("admin certificate: %w", err)
		}
		ag.tls = certs.ServerConfig(nil)
	}
	g.admin = ag
	return nil
}

// planAdmin binds the admin and webhook listeners of cfg that are not
// running yet, as parts of fp.
func (s *Server) planAdmin(fp *frontPlan, cfg *Config) error {
	if cfg.Admin == nil {
		return nil
	}
	a := cfg.Admin
	if _, _, err := take(fp.parts, adminKey{address: a.Address, tls: a.TLS != nil}, func() (adminEndpoint, func() error, error) {
		var conf *tls.Config
		if a.TLS != nil {
			conf = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				if ag := s.gen.Load().admin; ag != nil && ag.tls != nil {
					return ag.tls, nil
				}
				return nil, errors.New("admin listener has no certificate")
			}}
		}
		srv, err := s.listenAdmin(a.Address, conf, http.HandlerFunc(s.serveAdmin))
		if err != nil {
			return adminEndpoint{}, nil, err
		}
		return adminEndpoint{srv}, srv.Close, nil
	}); err != nil {
		return err
	}
	if w := cfg.Records.Webhook; w != nil {
		if _, _, err := take(fp.parts, webhookKey{w.Address}, func() (webhookEndpoint, func() error, error) {
			srv, err := s.listenAdmin(w.Address, nil, http.HandlerFunc(s.serveWebhook))
			if err != nil {
				return webhookEndpoint{}, nil, err
			}
			return webhookEndpoint{srv}, srv.Close, nil
		}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	ag := s.gen.Load().admin
	if ag == nil {
		http.NotFound(w, r)
		return
	}
	ag.api.ServeHTTP(w, r)
}

func (s *Server) serveWebhook(w http.ResponseWriter, r *http.Request) {
	ag := s.gen.Load().admin
	if ag == nil || ag.webhook == nil {
		http.NotFound(w, r)
		return
	}
	ag.webhook.ServeHTTP(w, r)
}

// AdminAddr returns the bound address of the admin listener, nil if none.
func (s *Server) AdminAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return frontAddr[adminEndpoint](s.pool, s.front)
}

// WebhookAddr returns the bound address of the ExternalDNS webhook
// listener, nil if none.
func (s *Server) WebhookAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return frontAddr[webhookEndpoint](s.pool, s.front)
}

// summaryAdmin prints where the admin and webhook listeners are; the
// caller holds s.mu.
func (s *Server) summaryAdmin(gen *generation) {
	if a := frontAddr[adminEndpoint](s.pool, s.front); a != nil {
		scheme := "http"
		if gen.cfg.Admin.TLS != nil {
			scheme = "https"
		}
		fmt.Fprintf(s.out, "admin API on %s://%s/api/v1/\n", scheme, a)
	}
	if a := frontAddr[webhookEndpoint](s.pool, s.front); a != nil {
		fmt.Fprintf(s.out, "ExternalDNS webhook on http://%s/\n", a)
	}
}

// frontAddr returns the address of the part of type T that front holds.
func frontAddr[T interface{ Addr() net.Addr }](p *pool, front *hold) net.Addr {
	var out net.Addr
	each(p, func(key any, v T) {
		if front != nil && front.holds(key) {
			out = v.Addr()
		}
	})
	return out
}
