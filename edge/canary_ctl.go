package edge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dnsedge/dnsedge/edge/canary"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Errors of the canary controls.
var (
	// ErrCanaryActive: a canary is running, passed or paused; promote or
	// abort it first.
	ErrCanaryActive = errors.New("a canary is under way: promote or abort it first")
	// ErrNoCanary: there is no canary to promote or abort.
	ErrNoCanary = errors.New("no canary is under way")
	// ErrNoConfigFile: the server cannot re-read its configuration.
	ErrNoConfigFile = errors.New("dnsedge was started without a configuration file to re-read: post a configuration instead")
)

// canaryMetrics are the canary's and rollback's series.
type canaryMetrics struct {
	verdicts  *prometheus.CounterVec
	rollbacks *prometheus.CounterVec
}

func newCanaryMetrics(reg prometheus.Registerer) *canaryMetrics {
	m := &canaryMetrics{
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsedge_canary_verdicts_total", Help: "Canary verdicts by outcome: pass (promoted or waiting for promote) or breach (paused).",
		}, []string{"verdict"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsedge_rollbacks_total", Help: "Swaps back to the configuration before a reload or a promoted canary, by reason: servfail, p99, breakers, fallback, manual.",
		}, []string{"reason"}),
	}
	for _, v := range []string{"pass", "breach"} {
		m.verdicts.WithLabelValues(v)
	}
	for _, r := range []string{"servfail", "p99", "breakers", "fallback", "manual"} {
		m.rollbacks.WithLabelValues(r)
	}
	reg.MustRegister(m.verdicts, m.rollbacks)
	return m
}

// CanaryRequest starts a canary. Unset overrides take the canary section
// of the configuration in force.
type CanaryRequest struct {
	// Config is the candidate; nil re-reads the configuration file, as
	// SIGHUP does (Options.Load).
	Config *Config
	// By names who asked, for the logs.
	By string
	// Overrides of the canary section for this run.
	Share, AnswerShare, ControlShare *float64
	MinSamples                       *int
	Window                           *time.Duration
	AutoPromote                      *bool
}

// settings merges r's overrides into the section c (defaults not yet
// filled) and validates the result.
func (r CanaryRequest) settings(c canary.Config) (canary.Config, error) {
	if r.Share != nil {
		c.Share = *r.Share
		if r.AnswerShare == nil && c.AnswerShare > c.Share {
			c.AnswerShare = c.Share
		}
		if r.ControlShare == nil && c.ControlShare > c.Share {
			c.ControlShare = 0
		}
	}
	if r.AnswerShare != nil {
		c.AnswerShare = *r.AnswerShare
		if r.ControlShare == nil && c.ControlShare > c.AnswerShare {
			c.ControlShare = 0
		}
	}
	if r.ControlShare != nil {
		c.ControlShare = *r.ControlShare
	}
	if r.MinSamples != nil {
		c.Thresholds.MinSamples = *r.MinSamples
	}
	if r.Window != nil {
		c.Thresholds.Window = *r.Window
	}
	if r.AutoPromote != nil {
		c.AutoPromote = r.AutoPromote
	}
	c = c.WithDefaults()
	return c, c.Validate()
}

// active reports whether the run still holds a candidate.
func (run *canaryRun) active() bool {
	run.mu.Lock()
	defer run.mu.Unlock()
	switch run.state {
	case CanaryRunning, CanaryPassed, CanaryPaused, canaryPromoting:
		return true
	}
	return false
}

// StartCanary builds the candidate of r uncommitted and starts trying it
// on live queries. A candidate that does not build, bad settings (a
// *field.Error naming the setting), or a canary already under way
// (ErrCanaryActive) change nothing.
func (s *Server) StartCanary(r CanaryRequest) (CanaryStatus, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.life.Err() != nil {
		return CanaryStatus{}, errors.New("server closed")
	}
	s.canaryMu.Lock()
	cur := s.canaryRun
	s.canaryMu.Unlock()
	if cur != nil && cur.active() {
		return CanaryStatus{}, ErrCanaryActive
	}
	live := s.gen.Load()
	settings, err := r.settings(live.cfg.Canary)
	if err != nil {
		return CanaryStatus{}, err
	}
	source, cfg := "posted", r.Config
	if cfg == nil {
		if s.load == nil {
			return CanaryStatus{}, ErrNoConfigFile
		}
		if cfg, err = s.load(); err != nil {
			return CanaryStatus{}, err
		}
		source = "file"
	}
	cand, err := s.build(cfg)
	if err != nil {
		return CanaryStatus{}, fmt.Errorf("build the candidate: %w", err)
	}
	sh, err := s.buildShadow(s.life, cfg)
	if err != nil {
		cand.close()
		return CanaryStatus{}, fmt.Errorf("build the candidate's shadow: %w", err)
	}
	ctl, err := s.buildShadow(s.life, live.cfg)
	if err != nil {
		sh.close()
		cand.close()
		return CanaryStatus{}, fmt.Errorf("build the control's shadow: %w", err)
	}
	run := &canaryRun{
		s: s, cfg: settings, live: live, cand: cand, shadow: sh, control: ctl, source: source, by: r.By,
		started: s.clock.Now(), timeout: live.cfg.Server.QueryTimeout, state: CanaryRunning,
		verdict: canary.Verdict{State: canary.Pending, Reasons: []string{"no verdict taken yet"}},
		jobs:    make(chan shadowJob, settings.Queue),
		limiter: rate.NewLimiter(rate.Limit(settings.UpstreamQPS), settings.UpstreamBurst),
		byRule:  make(map[string]int64), byRoute: make(map[string]int64), byRcode: make(map[string]int64), byKind: make(map[string]int64),
	}
	run.ctx, run.cancel = context.WithCancel(s.life)
	for range settings.Workers {
		run.workers.Add(1)
		go run.work()
	}
	go run.verdictLoop()
	s.canaryMu.Lock()
	s.canaryRun = run
	s.canaryMu.Unlock()
	s.canaryHook.run.Store(run)
	s.log.Info("canary started", "source", source, "by", r.By, "share", settings.Share, "answer_share", settings.AnswerShare,
		"control_share", settings.ControlShare, "min_samples", settings.Thresholds.MinSamples, "window", settings.Thresholds.Window.String())
	return run.status(), nil
}

// PromoteCanary commits the candidate as a reload would, whatever its
// verdict so far (a paused canary may be promoted by an operator who
// judged the breach acceptable). The configuration it replaces is kept
// for the rollback watch.
func (s *Server) PromoteCanary(by string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	run := s.openCanary()
	if run == nil {
		return ErrNoCanary
	}
	run.state = canaryPromoting
	run.mu.Unlock()
	run.stop()
	var err error
	if s.gen.Load() != run.live {
		err = errors.New("the live configuration changed since the canary started")
	} else {
		err = s.install(run.cand)
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	run.ended = s.clock.Now()
	if err != nil {
		run.state, run.note = CanaryFailed, "not promoted: "+err.Error()
		run.cand.close()
		s.reloads.WithLabelValues("failed").Inc()
		return fmt.Errorf("promote: %w", err)
	}
	run.state, run.note = CanaryPromoted, "promoted by "+by
	s.reloads.WithLabelValues("ok").Inc()
	s.log.Info("canary promoted: the candidate configuration is live", "by", by, "decisions", run.sample.Decisions,
		"decision_diffs", run.sample.DecisionDiffs, "answers", run.sample.Answers, "answer_diffs", run.sample.AnswerDiffs)
	return nil
}

// openCanary returns the canary that can still be promoted or aborted
// (running, passed or paused), locked; nil when there is none.
func (s *Server) openCanary() *canaryRun {
	s.canaryMu.Lock()
	run := s.canaryRun
	s.canaryMu.Unlock()
	if run == nil {
		return nil
	}
	run.mu.Lock()
	switch run.state {
	case CanaryRunning, CanaryPassed, CanaryPaused:
		return run
	}
	run.mu.Unlock()
	return nil
}

// AbortCanary discards the candidate; live queries were never served by
// it.
func (s *Server) AbortCanary(why string) error {
	run := s.openCanary()
	if run == nil {
		return ErrNoCanary
	}
	run.state, run.note, run.ended = CanaryAborted, why, s.clock.Now()
	run.mu.Unlock()
	run.stop()
	err := run.cand.close()
	s.log.Info("canary aborted", "why", why)
	return err
}
