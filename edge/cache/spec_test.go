package cache

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/cache/l2"
	"github.com/dnsedge/dnsedge/internal/field"
)

func TestSpecConfig(t *testing.T) {
	t.Parallel()
	off, zero := false, time.Duration(0)
	tests := []struct {
		name  string
		spec  Spec
		check func(Config) bool
	}{
		{"defaults", Spec{}, func(c Config) bool {
			return c.MaxEntries == DefaultMaxEntries && c.MaxBytes == DefaultMaxBytes && c.MaxTTL == DefaultMaxTTL &&
				c.ServfailTTL == DefaultServfailTTL && !c.DisableStale && c.MaxStale == DefaultMaxStale && !c.DisablePrefetch
		}},
		{"set", Spec{MaxEntries: 10, MaxTTL: time.Minute, MaxStale: time.Hour}, func(c Config) bool {
			return c.MaxEntries == 10 && c.MaxTTL == time.Minute && c.MaxStale == time.Hour
		}},
		{"turned off", Spec{ServeStale: &off, Prefetch: &off, ServfailTTL: &zero}, func(c Config) bool {
			return c.DisableStale && c.DisablePrefetch && c.ServfailTTL == 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if c := tt.spec.Config(); !tt.check(c) {
				t.Errorf("Config() = %+v", c)
			}
		})
	}
}

func TestSpecValidate(t *testing.T) {
	t.Parallel()
	long := 6 * time.Minute
	tests := []struct {
		name string
		spec Spec
		want []string // paths, relative to the section
	}{
		{"zero", Spec{}, nil},
		{"negative", Spec{MaxEntries: -1, MaxBytes: -1, StaleTTL: -time.Second}, []string{"max_entries", "max_bytes", "stale_ttl"}},
		{"servfail too long", Spec{ServfailTTL: &long}, []string{"servfail_ttl"}},
		{"min above max", Spec{MinTTL: time.Hour, MaxTTL: time.Minute}, []string{"min_ttl"}},
		{"min above the default max", Spec{MinTTL: 2 * time.Hour}, nil},
		{"l2 without the cache", Spec{Enabled: new(false), L2: l2.Spec{Redis: l2.RedisSpec{Address: "127.0.0.1:6379"}, KeyEnv: "DNSEDGE_TEST_NO_SUCH_VARIABLE"}},
			[]string{"l2", "l2.key_env"}},
		{"l2 problems under l2", Spec{L2: l2.Spec{Namespace: "x"}}, []string{"l2.redis.address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, e := range field.Flatten(tt.spec.Validate()) {
				var fe *field.Error
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a *field.Error", e)
				}
				got = append(got, fe.Path)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems at %q, want %q", got, tt.want)
			}
		})
	}
}
