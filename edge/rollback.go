package edge

import (
	"errors"
	"strings"
	"time"

	"github.com/dnsedge/dnsedge/edge/canary"
)

// After every reload and every promoted canary the generation replaced is
// kept, not closed, for the new configuration's rollback.watch: it goes on
// holding its parts in the pool (upstreams, cache, zones), so that
// swapping back builds nothing. Every rollback.interval the new
// generation's answers since it went live are judged against what the old
// one answered while it was live (its baseline): a share of SERVFAIL, a
// p99 latency or a share of fallback answers that left the baseline, or
// a group whose every path's breaker opened, swaps the old generation
// back in, logs why and counts dnsedge_rollbacks_total{reason}. When the
// watch ends the old generation retires as after any reload.

// watch is one rollback watch. Its fields are set when it starts; ended
// is guarded by s.mu.
type watch struct {
	old, cur *generation
	base     canary.Window
	cfg      canary.RollbackConfig
	started  time.Time
	stop     chan struct{}
	verdict  canary.Verdict // guarded by s.mu
}

// rollbackEvent is the last rollback, for the status.
type rollbackEvent struct {
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	Why    string    `json:"why"`
}

// retire lets the generation old, replaced by cur, go: kept for cur's
// rollback watch, or released once queries in flight on it had time to
// finish. A watch under way ends, and its old generation retires. s.mu is
// held.
func (s *Server) retire(old, cur *generation) {
	s.endWatchLocked()
	if rc := cur.cfg.Rollback; rc.On() && old.stats != nil && cur.stats != nil {
		w := &watch{old: old, cur: cur, base: old.window(), cfg: rc, started: s.clock.Now(), stop: make(chan struct{})}
		s.watch = w
		go s.watchLoop(w)
		return
	}
	s.retireLater(old)
}

// retireLater closes old once queries in flight on it had time to finish.
// s.mu is held.
func (s *Server) retireLater(old *generation) {
	s.retiring[old] = time.AfterFunc(old.cfg.Server.QueryTimeout+time.Second, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.retiring[old]; !ok {
			return // Close got there first
		}
		delete(s.retiring, old)
		old.close()
	})
}

// endWatchLocked ends the watch under way, if any, and retires its old
// generation. s.mu is held.
func (s *Server) endWatchLocked() {
	w := s.watch
	if w == nil {
		return
	}
	s.watch = nil
	close(w.stop)
	s.retireLater(w.old)
}

func (s *Server) watchLoop(w *watch) {
	t := s.clock.NewTicker(w.cfg.Interval)
	defer t.Stop()
	end := w.started.Add(w.cfg.Watch)
	for {
		select {
		case <-w.stop:
			return
		case <-s.life.Done():
			return
		case <-t.Chan():
		}
		v := canary.JudgeRollback(w.cur.window(), w.base, w.cfg)
		s.mu.Lock()
		w.verdict = v
		s.mu.Unlock()
		if v.State == canary.Breach {
			s.rollback(w, v.Breached[0], strings.Join(v.Reasons, "; "))
			return
		}
		if !s.clock.Now().Before(end) {
			s.mu.Lock()
			if s.watch == w {
				s.endWatchLocked()
				s.log.Info("rollback watch over: the configuration stays", "watched", w.cfg.Watch.String())
			}
			s.mu.Unlock()
			return
		}
	}
}

// rollback swaps w's old generation back in, with its listeners, for
// reason. It does nothing when the watch has ended meanwhile.
func (s *Server) rollback(w *watch, reason, why string) bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	current := s.watch == w && !s.closed
	s.mu.Unlock()
	if !current {
		return false
	}
	var fp *frontPlan
	if s.started.Load() {
		var err error
		if fp, err = s.planFront(s.life, w.old.cfg); err != nil {
			// The old pipeline serves behind the new listeners.
			s.log.Error("rollback: the previous listeners could not be restored; the new ones stay", "error", err.Error())
			fp = nil
		}
	}
	s.mu.Lock()
	if s.watch != w || s.closed {
		s.mu.Unlock()
		if fp != nil {
			fp.parts.release()
		}
		return false
	}
	s.watch = nil
	close(w.stop)
	s.stampGen(w.old)
	bad := s.gen.Swap(w.old)
	s.health.SetConfig(w.old.cfg.Health.HealthConfig())
	s.setLevel(w.old.cfg)
	s.commitDrills(w.old)
	if fp != nil {
		s.commitFront(fp)
	}
	s.retireLater(bad)
	s.canaryMetrics.rollbacks.WithLabelValues(reason).Inc()
	s.lastRollback = &rollbackEvent{Time: s.clock.Now(), Reason: reason, Why: why}
	s.mu.Unlock()
	s.log.Warn("rolled back to the previous configuration", "reason", reason, "why", why,
		"after", s.clock.Since(w.started).Truncate(time.Millisecond).String())
	if reason != "manual" { // a manual rollback is audited by its endpoint
		s.writeAudit(auditLine{Time: s.clock.Now().UTC(), Action: "rollback.auto", Result: "ok",
			Details: map[string]any{"reason": reason, "why": why}})
	}
	// A canary tried against the configuration rolled back from has no
	// live configuration to be compared with any more.
	if err := s.AbortCanary("the live configuration was rolled back"); err != nil && !errors.Is(err, ErrNoCanary) {
		s.log.Warn("canary aborted with errors", "error", err.Error())
	}
	return true
}

// RollBack swaps the configuration before the last reload or promotion
// back in now, while its watch lasts; false when there is none to go
// back to.
func (s *Server) RollBack(why string) bool {
	s.mu.Lock()
	w := s.watch
	s.mu.Unlock()
	if w == nil {
		return false
	}
	return s.rollback(w, "manual", why)
}

// RollbackStatus is the rollback watch's state, for the admin API and the
// status page.
type RollbackStatus struct {
	Watching bool      `json:"watching"`
	Since    time.Time `json:"since,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	// Baseline is what the previous configuration answered while it was
	// live; Current what the new one answered since.
	Baseline *WindowStatus   `json:"baseline,omitempty"`
	Current  *WindowStatus   `json:"current,omitempty"`
	Verdict  *canary.Verdict `json:"verdict,omitempty"`
	Last     *rollbackEvent  `json:"last_rollback,omitempty"`
}

// WindowStatus is what a configuration answered.
type WindowStatus struct {
	Answers      int64    `json:"answers"`
	ServfailRate float64  `json:"servfail_rate"`
	FallbackRate float64  `json:"fallback_rate"`
	P99Ms        float64  `json:"p99_ms"`
	DarkGroups   []string `json:"groups_all_breakers_open,omitempty"`
}

func windowStatus(w canary.Window) *WindowStatus {
	return &WindowStatus{Answers: w.Answers, ServfailRate: rate01(w.Servfails, w.Answers), FallbackRate: rate01(w.Fallbacks, w.Answers),
		P99Ms: ms(w.P99), DarkGroups: w.DarkGroups}
}

// RollbackStatus returns the watch under way, if any, and the last
// rollback. Safe for concurrent use.
func (s *Server) RollbackStatus() RollbackStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := RollbackStatus{Last: s.lastRollback}
	if w := s.watch; w != nil {
		v := w.verdict
		st.Watching, st.Since, st.Until = true, w.started, w.started.Add(w.cfg.Watch)
		st.Baseline, st.Current, st.Verdict = windowStatus(w.base), windowStatus(w.cur.window()), &v
	}
	return st
}
