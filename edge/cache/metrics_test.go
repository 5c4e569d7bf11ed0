package cache

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gather returns the value of every dnsedge_cache_* metric in reg.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[mf.GetName()] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	c, err := New(Config{MaxEntries: 1}, reg)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Middleware()(&fakeNext{t: t, serve: answerAny})
	for _, n := range []string{"a.", "a.", "a.", "b.", "b."} {
		if _, err := serveName(t, h, n, 0); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]float64{
		"dnsedge_cache_hits_total":      3,
		"dnsedge_cache_misses_total":    2,
		"dnsedge_cache_evictions_total": 1,
		"dnsedge_cache_entries":         1,
	}
	got := gather(t, reg)
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}

	// A cache built for a new generation takes the metrics over.
	c2, err := New(Config{}, reg)
	if err != nil {
		t.Fatalf("second cache on the same registry: %v", err)
	}
	h2 := c2.Middleware()(&fakeNext{t: t, serve: answerAny})
	serveName(t, h2, "c.", 0)
	got = gather(t, reg)
	if got["dnsedge_cache_misses_total"] != 1 || got["dnsedge_cache_hits_total"] != 0 || got["dnsedge_cache_entries"] != 1 {
		t.Fatalf("after takeover: %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none: valid
	}{
		{"zero value", Config{}, nil},
		{"servfail at the limit", Config{ServfailTTL: 5 * time.Minute}, nil},
		{"MinTTL above MaxTTL", Config{MinTTL: time.Hour, MaxTTL: time.Minute}, nil},
		{"negative values", Config{MaxEntries: -1, MinTTL: -time.Second, NegativeTTL: -time.Second},
			[]string{"cache.max_entries: must not be negative", "cache.min_ttl: must not be negative", "cache.negative_ttl: must not be negative"}},
		{"servfail too long", Config{ServfailTTL: 6 * time.Minute}, []string{"cache.servfail_ttl: must be between 0s and 5m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.cfg, nil)
			if (err != nil) != (len(tt.want) > 0) {
				t.Fatalf("err = %v, want errors %q", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want uint32
	}{
		{0, 0}, {1500 * time.Millisecond, 1}, {time.Hour, 3600}, {1 << 62, 1<<31 - 1},
	}
	for _, tt := range tests {
		if got := seconds(tt.d); got != tt.want {
			t.Errorf("seconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
