// Package drill runs drills: a fault (drop, delay, loss, SERVFAIL,
// truncate) put on some of an upstream's paths for a bounded time, through
// the admin API, so that operators can watch dnsedge route around a
// broken path as it would around a real one. The fault acts at the path's
// exchange (transport.Fault), so health, breakers, the race and the
// serve-stale and fallback stages see it exactly as a real failure. A drill
// ends by itself at its deadline, on DELETE, or when its paths are gone;
// each start and end is audit-logged and exported as metrics.
package drill

import (
	"errors"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
)

// Defaults of the drills section.
const (
	DefaultMaxDuration     = 10 * time.Minute
	DefaultDefaultDuration = time.Minute
)

// Config is the `drills:` section: how long a drill may run. Drills are
// started on the admin listener, by a grant with access: admin.
type Config struct {
	// MaxDuration is the longest a drill may run; a request for longer
	// is refused.
	MaxDuration time.Duration `yaml:"max_duration"`
	// DefaultDuration is how long a drill runs when its request names no
	// duration.
	DefaultDuration time.Duration `yaml:"default_duration"`
}

// WithDefaults returns c with the defaults filled in. A default duration
// left out is at most the maximum.
func (c Config) WithDefaults() Config {
	if c.MaxDuration == 0 {
		c.MaxDuration = DefaultMaxDuration
	}
	if c.DefaultDuration == 0 {
		c.DefaultDuration = DefaultDefaultDuration
		if c.MaxDuration > 0 {
			c.DefaultDuration = min(c.DefaultDuration, c.MaxDuration)
		}
	}
	return c
}

// Validate reports every problem of the section (defaults filled in),
// each a *field.Error relative to it.
func (c Config) Validate() error {
	var errs []error
	if c.MaxDuration < 0 {
		errs = append(errs, field.Errorf("max_duration", "max_duration %v must be positive", c.MaxDuration))
	}
	switch {
	case c.DefaultDuration < 0:
		errs = append(errs, field.Errorf("default_duration", "default_duration %v must be positive", c.DefaultDuration))
	case c.MaxDuration > 0 && c.DefaultDuration > c.MaxDuration:
		errs = append(errs, field.Errorf("default_duration", "default_duration %v is more than max_duration %v", c.DefaultDuration, c.MaxDuration))
	}
	return errors.Join(errs...)
}
