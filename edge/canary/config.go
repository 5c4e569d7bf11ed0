// Package canary holds the pure parts of dnsedge's canary and rollback:
// their configuration sections, the structural comparison of two answers,
// the comparison of two policy decisions, a latency histogram cheap enough
// for every query, and the verdicts that judge a candidate configuration
// against the live one and a committed configuration against the one
// before it. It knows nothing of generations, sockets or the admin API;
// package edge runs them.
package canary

import (
	"errors"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
)

// Config is the `canary:` section: how a candidate configuration is tried
// on a share of live queries before it is committed, and when it passes.
// Every field has a default (see WithDefaults); a request to start a
// canary may override the shares and thresholds for that run.
type Config struct {
	// Share is the fraction of live queries whose policy decision is
	// also made by the candidate and compared (the decision diff), from
	// 0 to 1. Default 0.05. `dnsedge reload --canary SHARE` sets it.
	Share float64 `yaml:"share" json:"share,omitempty"`
	// AnswerShare is the fraction of live queries also resolved through
	// the candidate and compared with the live answer (the answer
	// diff); at most Share. Default 0.01.
	AnswerShare float64 `yaml:"answer_share" json:"answer_share,omitempty"`
	// ControlShare is the fraction of live queries also resolved again
	// through the live configuration, in isolation, to measure how much
	// two resolutions of the same query differ anyway (CDNs answering
	// subsets); at most AnswerShare, and the same queries as the answer
	// diff's. Default: AnswerShare.
	ControlShare float64 `yaml:"control_share" json:"control_share,omitempty"`
	// Thresholds decide the verdict.
	Thresholds Thresholds `yaml:"thresholds" json:"thresholds"`
	// AutoPromote commits a candidate that passes; with false it waits
	// for POST /admin/v1/canary/promote. Default true.
	AutoPromote *bool `yaml:"auto_promote" json:"auto_promote,omitempty"`
	// Workers resolve sampled queries in the background, at most Queue
	// waiting; a sample that finds the queue full is dropped and
	// counted. Defaults 4 and 256.
	Workers int `yaml:"workers" json:"workers,omitempty"`
	Queue   int `yaml:"queue" json:"queue,omitempty"`
	// UpstreamQPS caps the exchanges the canary adds upstream (each
	// answer-diff sample costs one, its control one more), with bursts
	// of UpstreamBurst. Defaults 50 and UpstreamQPS.
	UpstreamQPS   float64 `yaml:"upstream_qps" json:"upstream_qps,omitempty"`
	UpstreamBurst int     `yaml:"upstream_burst" json:"upstream_burst,omitempty"`
}

// Thresholds judge a candidate. The verdict waits for MinSamples answer
// samples (decision samples when AnswerShare is 0); from then on a
// threshold crossed is a breach, and the candidate is paused; when the
// thresholds have held for Window since the start, it passes.
type Thresholds struct {
	// MinSamples is the least number of samples a verdict is given on.
	// Default 200.
	MinSamples int `yaml:"min_samples" json:"min_samples,omitempty"`
	// Window is how long the thresholds must hold. Default 60s.
	Window time.Duration `yaml:"window" json:"window,omitempty"`
	// MaxServfailIncrease is how much higher the candidate's share of
	// SERVFAIL answers and timeouts may be than the control's, from 0 to
	// 1. Default 0.01.
	MaxServfailIncrease float64 `yaml:"max_servfail_increase" json:"max_servfail_increase,omitempty"`
	// MaxP99Ratio bounds the candidate's 99th percentile latency as a
	// multiple of the control's; P99Floor is a difference always
	// allowed, so that fast answers' jitter is no breach. Defaults 2
	// and 50ms.
	MaxP99Ratio float64       `yaml:"max_p99_ratio" json:"max_p99_ratio,omitempty"`
	P99Floor    time.Duration `yaml:"p99_floor" json:"p99_floor,omitempty"`
	// MaxDiffIncrease is how much higher the candidate's answer diff rate
	// may be than the control's (the noise), from 0 to 1. Default 0.05.
	MaxDiffIncrease float64 `yaml:"max_diff_increase" json:"max_diff_increase,omitempty"`
}

// Defaults of the canary section.
const (
	DefaultShare       = 0.05
	DefaultAnswerShare = 0.01
	DefaultWorkers     = 4
	DefaultQueue       = 256
	DefaultUpstreamQPS = 50
)

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	if c.Share == 0 {
		c.Share = DefaultShare
	}
	if c.AnswerShare == 0 {
		c.AnswerShare = min(DefaultAnswerShare, c.Share)
	}
	if c.ControlShare == 0 {
		c.ControlShare = c.AnswerShare
	}
	if c.AutoPromote == nil {
		t := true
		c.AutoPromote = &t
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.Queue == 0 {
		c.Queue = DefaultQueue
	}
	if c.UpstreamQPS == 0 {
		c.UpstreamQPS = DefaultUpstreamQPS
	}
	if c.UpstreamBurst == 0 {
		c.UpstreamBurst = max(1, int(c.UpstreamQPS))
	}
	c.Thresholds = c.Thresholds.WithDefaults()
	return c
}

// WithDefaults returns t with every unset field given its default.
func (t Thresholds) WithDefaults() Thresholds {
	if t.MinSamples == 0 {
		t.MinSamples = 200
	}
	if t.Window == 0 {
		t.Window = 60 * time.Second
	}
	if t.MaxServfailIncrease == 0 {
		t.MaxServfailIncrease = 0.01
	}
	if t.MaxP99Ratio == 0 {
		t.MaxP99Ratio = 2
	}
	if t.P99Floor == 0 {
		t.P99Floor = 50 * time.Millisecond
	}
	if t.MaxDiffIncrease == 0 {
		t.MaxDiffIncrease = 0.05
	}
	return t
}

// Validate reports every problem of a section with defaults filled in,
// each a *field.Error relative to it.
func (c Config) Validate() error {
	var errs []error
	share := func(path string, v float64) {
		if !(v >= 0 && v <= 1) { // NaN too
			errs = append(errs, field.Errorf(path, "%v must be a fraction from 0 to 1 (0.05 is 5 %%)", v))
		}
	}
	share("share", c.Share)
	share("answer_share", c.AnswerShare)
	share("control_share", c.ControlShare)
	if c.Share == 0 {
		errs = append(errs, field.Errorf("share", "a canary needs a share of queries above 0"))
	}
	if c.AnswerShare > c.Share {
		errs = append(errs, field.Errorf("answer_share", "%v is above share %v: answer diffs are taken from the sampled queries", c.AnswerShare, c.Share))
	}
	if c.ControlShare > c.AnswerShare {
		errs = append(errs, field.Errorf("control_share", "%v is above answer_share %v: the control runs on the answer diff's queries", c.ControlShare, c.AnswerShare))
	}
	if c.Workers < 1 || c.Workers > 256 {
		errs = append(errs, field.Errorf("workers", "%d workers: want 1 to 256", c.Workers))
	}
	if c.Queue < 1 || c.Queue > 1<<16 {
		errs = append(errs, field.Errorf("queue", "queue of %d: want 1 to 65536", c.Queue))
	}
	if !(c.UpstreamQPS > 0) {
		errs = append(errs, field.Errorf("upstream_qps", "%v: the canary needs a positive rate of upstream exchanges", c.UpstreamQPS))
	}
	if c.UpstreamBurst < 1 {
		errs = append(errs, field.Errorf("upstream_burst", "%d: want at least 1", c.UpstreamBurst))
	}
	errs = append(errs, field.Prefix("thresholds", c.Thresholds.Validate()))
	return errors.Join(errs...)
}

// Validate reports every problem of thresholds with defaults filled in.
func (t Thresholds) Validate() error {
	var errs []error
	if t.Window < 0 {
		errs = append(errs, field.Errorf("window", "%v is negative", t.Window))
	}
	errs = append(errs, judged{
		minSamples: t.MinSamples, p99Ratio: t.MaxP99Ratio, p99Floor: t.P99Floor,
		ratioBelow1: "a ratio below 1 would fail a candidate as fast as the live configuration",
		fractions:   []fraction{{"max_servfail_increase", t.MaxServfailIncrease}, {"max_diff_increase", t.MaxDiffIncrease}},
	}.check()...)
	return errors.Join(errs...)
}

// judged is what the canary's thresholds and the rollback watch share:
// a sample floor, a p99 bound and rates that may rise by a fraction.
type judged struct {
	minSamples  int
	p99Ratio    float64
	p99Floor    time.Duration
	ratioBelow1 string // why max_p99_ratio must be at least 1
	fractions   []fraction
}

type fraction struct {
	path string
	v    float64
}

func (j judged) check() []error {
	var errs []error
	if j.minSamples < 1 {
		errs = append(errs, field.Errorf("min_samples", "%d: want at least 1", j.minSamples))
	}
	for _, f := range j.fractions {
		if !(f.v >= 0 && f.v <= 1) {
			errs = append(errs, field.Errorf(f.path, "%v must be a fraction from 0 to 1", f.v))
		}
	}
	if !(j.p99Ratio >= 1) {
		errs = append(errs, field.Errorf("max_p99_ratio", "%v: %s", j.p99Ratio, j.ratioBelow1))
	}
	if j.p99Floor < 0 {
		errs = append(errs, field.Errorf("p99_floor", "%v is negative", j.p99Floor))
	}
	return errs
}

// RollbackConfig is the `rollback:` section: after every reload and every
// promoted canary, the configuration before it is kept for Watch, and
// dnsedge swaps back to it when the new one does worse than the old one
// did (its baseline).
type RollbackConfig struct {
	// Enabled: false turns rollback off; it is on when absent.
	Enabled *bool `yaml:"enabled"`
	// Watch is how long the previous configuration is kept. Default 60s.
	Watch time.Duration `yaml:"watch"`
	// Interval is how often the new configuration is judged. Default 1s.
	Interval time.Duration `yaml:"interval"`
	// MinSamples is the least number of answers of the new configuration
	// its SERVFAIL, latency and fallback rates are judged on. Default 50.
	MinSamples int `yaml:"min_samples"`
	// MaxServfailIncrease is how much the share of SERVFAIL answers may
	// rise over the baseline, from 0 to 1. Default 0.05.
	MaxServfailIncrease float64 `yaml:"max_servfail_increase"`
	// MaxP99Ratio and P99Floor bound the 99th percentile latency as for
	// the canary. Defaults 3 and 100ms.
	MaxP99Ratio float64       `yaml:"max_p99_ratio"`
	P99Floor    time.Duration `yaml:"p99_floor"`
	// MaxFallbackIncrease is how much the share of answers from the
	// fallback zone may rise over the baseline. Default 0.05.
	MaxFallbackIncrease float64 `yaml:"max_fallback_increase"`
	// Breakers rolls back when more groups have every path's breaker open
	// than before. Default true.
	Breakers *bool `yaml:"breakers"`
}

// DefaultWatch is how long a previous configuration is kept.
const DefaultWatch = 60 * time.Second

// WithDefaults returns c with every unset field given its default.
func (c RollbackConfig) WithDefaults() RollbackConfig {
	if c.Watch == 0 {
		c.Watch = DefaultWatch
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.MinSamples == 0 {
		c.MinSamples = 50
	}
	if c.MaxServfailIncrease == 0 {
		c.MaxServfailIncrease = 0.05
	}
	if c.MaxP99Ratio == 0 {
		c.MaxP99Ratio = 3
	}
	if c.P99Floor == 0 {
		c.P99Floor = 100 * time.Millisecond
	}
	if c.MaxFallbackIncrease == 0 {
		c.MaxFallbackIncrease = 0.05
	}
	if c.Breakers == nil {
		t := true
		c.Breakers = &t
	}
	return c
}

// On reports whether rollback watches reloads.
func (c RollbackConfig) On() bool { return (c.Enabled == nil || *c.Enabled) && c.Watch > 0 }

// Validate reports every problem of a section with defaults filled in.
func (c RollbackConfig) Validate() error {
	var errs []error
	if c.Watch < 0 {
		errs = append(errs, field.Errorf("watch", "%v is negative (enabled: false turns rollback off)", c.Watch))
	}
	if c.Watch > 24*time.Hour {
		errs = append(errs, field.Errorf("watch", "%v keeps the previous configuration's upstreams and cache alive too long: at most 24h", c.Watch))
	}
	if c.Interval <= 0 || c.Interval > c.Watch {
		errs = append(errs, field.Errorf("interval", "%v: want a positive interval no longer than watch", c.Interval))
	}
	errs = append(errs, judged{
		minSamples: c.MinSamples, p99Ratio: c.MaxP99Ratio, p99Floor: c.P99Floor,
		ratioBelow1: "want at least 1",
		fractions:   []fraction{{"max_servfail_increase", c.MaxServfailIncrease}, {"max_fallback_increase", c.MaxFallbackIncrease}},
	}.check()...)
	return errors.Join(errs...)
}
