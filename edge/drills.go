package edge

import (
	"net/http"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/drill"
	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/transport"
)

// Drills put a fault on some of an upstream's paths for a while, through
// the admin API (edge/drill). The manager lives on the server, beside the
// paths' health: a drill outlives a reload that keeps its paths and ends
// when they are gone. What it may do (durations) and who may start it
// follow the generation in force.

// newDrills returns the server's drill manager; its faults are kept in
// the health registry, and its targets are the paths of the generation
// in force.
func (s *Server) newDrills(opts Options) *drill.Manager {
	m := drill.NewManager(drill.Deps{
		Faults: s.health,
		Paths:  func() []*transport.Path { return s.gen.Load().paths() },
		Clock:  opts.Clock,
		Log:    s.log,
		Audit:  s.auditDrill,
	})
	s.prom.MustRegister(m.Collectors()...)
	return m
}

// validateDrills checks the drills section and that there is an admin
// listener to run drills through.
func (c *Config) validateDrills() []error {
	errs := field.Flatten(field.Prefix("drills", c.Drills.Validate()))
	if c.Admin == nil && c.Drills != (drill.Config{}).WithDefaults() {
		errs = append(errs, field.Errorf("drills", "drills run through the admin listener: add an admin section"))
	}
	return errs
}

// registerDrills adds the drills API to the admin mux of a generation.
func registerDrills(mux *http.ServeMux, auth *admin.Auth, cfg *Config, d buildDeps) {
	if d.drills != nil {
		drill.NewHandler(d.drills, auth, cfg.Drills).Register(mux)
	}
}

// commitDrills follows the generation gen just put in force: drills on
// paths it no longer has end.
func (s *Server) commitDrills(*generation) {
	s.drills.Prune()
}

// DrillStatus returns the active drills and the last ones that ended, for
// the status page. Safe for concurrent use.
func (s *Server) DrillStatus() drill.Status { return s.drills.Status() }
