package canary

import (
	"fmt"
	"slices"
	"time"
)

// Verdict states.
const (
	Pending = "pending" // too few samples, or the window is not over
	Pass    = "pass"    // the thresholds held over the window
	Breach  = "breach"  // a threshold was crossed
)

// Sample is what a canary has measured so far.
type Sample struct {
	// Decisions compared, and how many differed.
	Decisions, DecisionDiffs int64
	// Answers resolved through the candidate; how many differed from the
	// live answer, and how many failed (SERVFAIL or no answer in time).
	Answers, AnswerDiffs, AnswerFailures int64
	// Controls resolved again through the live configuration; how many
	// differed from the live answer, and how many failed.
	Controls, ControlDiffs, ControlFailures int64
	// P99 of the candidate's and the control's resolutions.
	AnswerP99, ControlP99 time.Duration
	// AnswerShare is the share of answer diffs the canary asked for: 0
	// means it judges on decisions only.
	AnswerShare float64
}

// Verdict is the judgement of a canary, or of a committed configuration
// during its rollback watch.
type Verdict struct {
	State string `json:"state"`
	// Reasons say what was crossed (Breach) or what is awaited (Pending).
	Reasons []string `json:"reasons,omitempty"`
	// Breached names the thresholds crossed: servfail, p99, diff for a
	// canary; servfail, p99, fallback, breakers for a rollback.
	Breached []string `json:"breached,omitempty"`
}

// eps keeps a rate exactly at its threshold from crossing it by rounding.
const eps = 1e-9

func rate(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// Judge returns the verdict on s after elapsed time under th.
func Judge(s Sample, th Thresholds, elapsed time.Duration) Verdict {
	samples := s.Answers
	if s.AnswerShare == 0 {
		samples = s.Decisions
	}
	if samples < int64(th.MinSamples) {
		return Verdict{State: Pending, Reasons: []string{fmt.Sprintf("%d of %d samples", samples, th.MinSamples)}}
	}
	var v Verdict
	breach := func(name, format string, args ...any) {
		v.Breached = append(v.Breached, name)
		v.Reasons = append(v.Reasons, fmt.Sprintf(format, args...))
	}
	if s.AnswerShare > 0 {
		cf, lf := rate(s.AnswerFailures, s.Answers), rate(s.ControlFailures, s.Controls)
		if cf-lf > th.MaxServfailIncrease+eps {
			breach("servfail", "SERVFAIL and timeouts %.2f%% against the control's %.2f%% (at most +%.2f points)", 100*cf, 100*lf, 100*th.MaxServfailIncrease)
		}
		if s.ControlP99 > 0 && s.AnswerP99 > max(time.Duration(th.MaxP99Ratio*float64(s.ControlP99)), s.ControlP99+th.P99Floor) {
			breach("p99", "p99 %v against the control's %v (at most %.3gx, or +%v)", s.AnswerP99, s.ControlP99, th.MaxP99Ratio, th.P99Floor)
		}
		cd, ld := rate(s.AnswerDiffs, s.Answers), rate(s.ControlDiffs, s.Controls)
		if cd-ld > th.MaxDiffIncrease+eps {
			breach("diff", "answer diffs %.2f%% against the control's noise %.2f%% (at most +%.2f points)", 100*cd, 100*ld, 100*th.MaxDiffIncrease)
		}
	}
	if len(v.Breached) > 0 {
		v.State = Breach
		return v
	}
	if elapsed < th.Window {
		return Verdict{State: Pending, Reasons: []string{fmt.Sprintf("thresholds held for %v of %v", elapsed.Truncate(time.Second), th.Window)}}
	}
	return Verdict{State: Pass}
}

// Window is what one configuration served over some time: its answers,
// SERVFAILs, fallback answers, latencies, and its groups with every
// breaker open.
type Window struct {
	Answers, Servfails, Fallbacks int64
	P99                           time.Duration
	DarkGroups                    []string
}

// Sub returns the counts of w since before (the latency and dark groups
// are w's own).
func (w Window) Sub(before Window) Window {
	w.Answers -= before.Answers
	w.Servfails -= before.Servfails
	w.Fallbacks -= before.Fallbacks
	return w
}

// JudgeRollback returns the verdict on a committed configuration's window
// now against the baseline of the one it replaced. A breach names the
// thresholds crossed; the first is the rollback's reason. Rates need
// c.MinSamples answers; a baseline with fewer counts as a clean one.
func JudgeRollback(now, base Window, c RollbackConfig) Verdict {
	var v Verdict
	breach := func(name, format string, args ...any) {
		v.Breached = append(v.Breached, name)
		v.Reasons = append(v.Reasons, fmt.Sprintf(format, args...))
	}
	if *c.Breakers {
		var fresh []string
		for _, g := range now.DarkGroups {
			if !slices.Contains(base.DarkGroups, g) {
				fresh = append(fresh, g)
			}
		}
		if len(fresh) > 0 {
			breach("breakers", "every path's breaker is open in group %v, which was not so before", fresh)
		}
	}
	if now.Answers >= int64(c.MinSamples) {
		trusted := base.Answers >= int64(c.MinSamples)
		bs, bf := 0.0, 0.0
		if trusted {
			bs, bf = rate(base.Servfails, base.Answers), rate(base.Fallbacks, base.Answers)
		}
		if ns := rate(now.Servfails, now.Answers); ns-bs > c.MaxServfailIncrease+eps {
			breach("servfail", "SERVFAIL %.2f%% of %d answers against %.2f%% before", 100*ns, now.Answers, 100*bs)
		}
		if trusted && base.P99 > 0 && now.P99 > max(time.Duration(c.MaxP99Ratio*float64(base.P99)), base.P99+c.P99Floor) {
			breach("p99", "p99 %v against %v before", now.P99, base.P99)
		}
		if nf := rate(now.Fallbacks, now.Answers); nf-bf > c.MaxFallbackIncrease+eps {
			breach("fallback", "fallback answers %.2f%% against %.2f%% before", 100*nf, 100*bf)
		}
	}
	if len(v.Breached) > 0 {
		v.State = Breach
		return v
	}
	if now.Answers < int64(c.MinSamples) {
		v.Reasons = []string{fmt.Sprintf("%d of %d answers", now.Answers, c.MinSamples)}
	}
	v.State = Pending
	return v
}
