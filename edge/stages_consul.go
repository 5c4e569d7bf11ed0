package edge

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/dnsedge/dnsedge/edge/consul"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Keys of the Consul parts in the pool: the section (and the state of
// the token file), so that a reload that keeps them keeps the watches
// and their views; the policy watcher also by the groups a version may
// route to.
type (
	consulKey       struct{ spec string }
	consulPolicyKey struct{ spec, groups string }
)

func consulSpec(c consul.Config) string {
	c.Policy = consul.PolicyConfig{}
	return jsonKey(c) + fileStamp(c.TokenFile)
}

// buildConsul answers the Consul domain from the backend in the pool,
// at the chain position of the local zones.
func buildConsul(b *chainBuild) (pipeline.Middleware, error) {
	cfg := b.g.cfg.Consul
	if !cfg.On() {
		return nil, nil
	}
	be, _, err := take(b.g.parts, consulKey{consulSpec(cfg)}, func() (*consul.Backend, func() error, error) {
		be, err := consul.New(cfg, consul.Options{Logger: b.d.log})
		if err != nil {
			return nil, nil, err
		}
		return be, be.Close, nil
	})
	if err != nil {
		return nil, err
	}
	if err := be.Register(b.g.metrics); err != nil {
		return nil, err
	}
	return be.Middleware(), nil
}

// consulPolicy returns the policy stage over the policy watcher in the
// pool, or nil when the policy does not come from Consul.
func consulPolicy(b *chainBuild) (pipeline.Middleware, error) {
	cfg := b.g.cfg.Consul
	if !cfg.On() || !cfg.Policy.Enabled {
		return nil, nil
	}
	var groups []string
	for _, g := range b.g.cfg.Groups {
		groups = append(groups, g.Name)
	}
	slices.Sort(groups)
	// What the watcher is built from: how to reach the agent and where
	// the versions are (first_wait only matters at start).
	conn := struct {
		Address, TokenFile, Prefix string
		TLS                        consul.TLSConfig
	}{cfg.Address, cfg.TokenFile, cfg.Policy.Prefix, cfg.TLS}
	key := consulPolicyKey{spec: jsonKey(conn) + fileStamp(cfg.TokenFile), groups: jsonKey(groups)}
	pw, _, err := take(b.g.parts, key, func() (*consul.PolicyWatcher, func() error, error) {
		client, err := consul.NewClient(cfg)
		if err != nil {
			return nil, nil, err
		}
		pw := consul.NewPolicyWatcher(cfg, client, groups, b.d.log, nil)
		return pw, pw.Close, nil
	})
	if err != nil {
		return nil, err
	}
	if err := pw.Register(b.g.metrics); err != nil {
		return nil, err
	}
	return pw.Stage(b.g.cfg.defaultGroup()), nil
}

// policyStatusBody is what /status/policy answers.
type policyStatusBody struct {
	// Source is where the policy comes from: consul, config (the
	// policy section or policy_file) or none.
	Source string `json:"source"`
	// Prefix is the KV prefix, for source consul.
	Prefix string `json:"prefix,omitempty"`
	consul.PolicyStatus
}

// policyStatus answers /status/policy: the version in force and, for a
// policy from Consul KV, the version the active key names and why it is
// refused when it is (key, line, field).
func (s *Server) policyStatus(w http.ResponseWriter, _ *http.Request) {
	g := s.gen.Load()
	body := policyStatusBody{Source: "none"}
	switch cfg := g.cfg; {
	case cfg.Consul.On() && cfg.Consul.Policy.Enabled:
		body.Source, body.Prefix = "consul", cfg.Consul.Policy.Prefix
		each(s.pool, func(key any, pw *consul.PolicyWatcher) {
			if g.parts.holds(key) {
				body.PolicyStatus = pw.Status()
			}
		})
	case cfg.policy != nil:
		body.Source = "config"
		body.InForce = cfg.policy.Version()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}
