package edge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsedge/dnsedge/edge/canary"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
	"golang.org/x/time/rate"
)

// The canary tries a candidate configuration on a share of live queries
// before it is committed. The candidate generation is built as a reload
// would build it, from the server's pool, and held uncommitted (plan, then
// commit). A tap in the live chain, just before policy, samples a share of
// the queries. Once the live answer is made it compares the live and the
// candidate policy's decisions on the query as policy saw it (exact, no
// upstream involved), on the query's own goroutine. A smaller share goes
// to a bounded pool of workers instead (a full pool drops the sample and
// counts it): a worker compares the decisions, resolves the query through
// a shadow of the candidate and compares the answer with the live one;
// on the same queries a shadow of the live configuration resolves it
// again, the control, which measures how much two resolutions differ
// anyway.
// Shadow resolutions are capped by a token bucket. A verdict is taken
// every second: a breach pauses the canary and says why, a pass promotes
// it (unless auto_promote is false), and abort discards it.

// Canary states.
const (
	CanaryNone      = "none"
	CanaryRunning   = "running"
	CanaryPassed    = "passed" // passed, waiting for promote (auto_promote: false)
	CanaryPaused    = "paused" // a threshold was crossed
	CanaryPromoted  = "promoted"
	CanaryAborted   = "aborted"
	CanaryFailed    = "failed" // the candidate could not be committed
	canaryPromoting = "promoting"
)

// canaryHook is what a live generation's tap reads: the canary running
// against it, if any.
type canaryHook struct {
	run atomic.Pointer[canaryRun]
}

// canaryRun is one canary, from start to promotion or abort.
type canaryRun struct {
	s          *Server
	cfg        canary.Config
	live, cand *generation
	// shadows of the live and candidate configurations.
	control, shadow *shadow
	source, by      string
	started         time.Time
	timeout         time.Duration

	jobs    chan shadowJob
	limiter *rate.Limiter
	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup

	dropQueue, dropRate atomic.Int64

	mu      sync.Mutex // guards what follows
	state   string
	ended   time.Time
	verdict canary.Verdict
	sample  canary.Sample
	ansLat  canary.Histogram
	ctlLat  canary.Histogram
	byRule  map[string]int64 // decision diffs by the live rule
	byRoute map[string]int64 // decision diffs by live route -> candidate route
	byRcode map[string]int64 // answer diffs by live rcode -> candidate rcode
	byKind  map[string]int64 // answer diffs by what differs
	note    string           // why it ended, for promoted, aborted, failed
}

// shadowJob is one sampled query: the request as policy was to see it,
// the live answer, and the draw that decides how far it is compared.
type shadowJob struct {
	req  pipeline.Request
	live *dns.Msg // nil when the live pipeline failed
	draw float64
}

// buildCanaryTap is the canary's stage: it also counts what the
// generation answers for the rollback watch. Shadow generations have none.
func buildCanaryTap(b *chainBuild) (pipeline.Middleware, error) {
	hook := b.d.hook
	if hook == nil {
		return nil, nil
	}
	g := b.g
	g.stats = new(genStats)
	return func(next pipeline.Handler) pipeline.Handler {
		return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
			run := hook.run.Load()
			if run == nil || run.live != g {
				m, err := next.ServeDNS(ctx, req)
				g.stats.record(req, m, err)
				return m, err
			}
			draw := rand.Float64()
			if draw >= run.cfg.Share {
				m, err := next.ServeDNS(ctx, req)
				g.stats.record(req, m, err)
				return m, err
			}
			// req.Msg and the reply are read-only (pipeline.Handler):
			// the sample keeps them, not copies.
			j := shadowJob{req: *req, draw: draw}
			j.req.Wire, j.req.Signer, j.req.Outcome = nil, nil, pipeline.Outcome{}
			m, err := next.ServeDNS(ctx, req)
			g.stats.record(req, m, err)
			switch {
			case errors.Is(err, pipeline.ErrDrop):
				return m, err
			case draw >= run.cfg.AnswerShare:
				// A decision diff alone is two policy decisions: cheaper
				// taken here than a worker's wake-up.
				run.compareDecisions(&j.req)
				return m, err
			case err != nil:
				j.live = pipeline.ErrorReply(req.Msg, err)
			default:
				j.live = m
			}
			select {
			case run.jobs <- j:
			default:
				run.dropQueue.Add(1)
			}
			return m, err
		})
	}, nil
}

// work runs the worker loop until the run is stopped.
func (run *canaryRun) work() {
	defer run.workers.Done()
	for {
		select {
		case <-run.ctx.Done():
			return
		case j := <-run.jobs:
			run.compare(&j)
		}
	}
}

// compareDecisions takes a sample that asks for the decision diff alone,
// on the query's goroutine once its answer is made.
func (run *canaryRun) compareDecisions(req *pipeline.Request) {
	if run.ctx.Err() != nil {
		return
	}
	dl, dc := decide(run.ctx, run.live, req), decide(run.ctx, run.cand, req)
	differs := len(dl.Compare(dc)) > 0
	run.mu.Lock()
	run.countDecisionLocked(&dl, &dc, differs)
	run.mu.Unlock()
}

// countDecisionLocked counts one decision diff sample; run.mu is held.
func (run *canaryRun) countDecisionLocked(dl, dc *canary.Decision, differs bool) {
	run.sample.Decisions++
	if differs {
		run.sample.DecisionDiffs++
		run.byRule[nameOr(dl.Rule, "(no rule)")]++
		run.byRoute[dl.Route+" -> "+dc.Route]++
	}
}

// compare does what j's draw asks of one sample that goes to a worker:
// the decision diff, and the answer diff with its control.
func (run *canaryRun) compare(j *shadowJob) {
	dl, dc := decide(run.ctx, run.live, &j.req), decide(run.ctx, run.cand, &j.req)
	differs := len(dl.Compare(dc)) > 0
	var ans, ctl struct {
		m      *dns.Msg
		failed bool
		took   time.Duration
		done   bool
	}
	n := 1
	if j.draw < run.cfg.ControlShare {
		n = 2
	}
	if !run.limiter.AllowN(run.s.clock.Now(), n) {
		run.dropRate.Add(1)
	} else {
		ans.m, ans.failed, ans.took = run.shadow.resolve(run.ctx, &j.req, run.timeout)
		ans.done = true
		if n == 2 {
			ctl.m, ctl.failed, ctl.took = run.control.resolve(run.ctx, &j.req, run.timeout)
			ctl.done = true
		}
	}
	if run.ctx.Err() != nil {
		return // stopped: an answer cut short is not the candidate's
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	s := &run.sample
	run.countDecisionLocked(&dl, &dc, differs)
	if ans.done {
		s.Answers++
		run.ansLat.Observe(ans.took)
		if ans.failed {
			s.AnswerFailures++
		}
		if d := canary.Compare(j.live, ans.m); d != 0 {
			s.AnswerDiffs++
			run.byRcode[rcodeName(j.live)+" -> "+rcodeName(ans.m)]++
			for _, n := range d.Names() {
				run.byKind[n]++
			}
		}
	}
	if ctl.done {
		s.Controls++
		run.ctlLat.Observe(ctl.took)
		if ctl.failed {
			s.ControlFailures++
		}
		if canary.Compare(j.live, ctl.m) != 0 {
			s.ControlDiffs++
		}
	}
}

func nameOr(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func rcodeName(m *dns.Msg) string {
	if m == nil {
		return "timeout"
	}
	if n, ok := dns.RcodeToString[m.Rcode]; ok {
		return n
	}
	return fmt.Sprint(m.Rcode)
}

// judgeLocked takes the verdict now; run.mu is held.
func (run *canaryRun) judgeLocked(now time.Time) canary.Verdict {
	s := run.sample
	s.AnswerShare = run.cfg.AnswerShare
	s.AnswerP99 = run.ansLat.Snapshot().Quantile(0.99)
	s.ControlP99 = run.ctlLat.Snapshot().Quantile(0.99)
	return canary.Judge(s, run.cfg.Thresholds, now.Sub(run.started))
}

// verdictLoop judges the run every second until it ends: a breach pauses
// it, a pass promotes it or waits for promote.
func (run *canaryRun) verdictLoop() {
	t := run.s.clock.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-run.ctx.Done():
			return
		case <-t.Chan():
		}
		if run.tick() {
			return
		}
	}
}

// tick takes one verdict and acts on it; it reports whether the run left
// the running state.
func (run *canaryRun) tick() bool {
	run.mu.Lock()
	if run.state != CanaryRunning {
		run.mu.Unlock()
		return true
	}
	v := run.judgeLocked(run.s.clock.Now())
	run.verdict = v
	switch v.State {
	case canary.Breach:
		run.state = CanaryPaused
		run.mu.Unlock()
		// Sampling stops; the candidate is kept for promote or abort.
		run.s.canaryHook.run.CompareAndSwap(run, nil)
		run.s.log.Warn("canary paused: a threshold was crossed", "breached", strings.Join(v.Breached, ","), "why", strings.Join(v.Reasons, "; "))
		run.s.canaryMetrics.verdicts.WithLabelValues("breach").Inc()
		return true
	case canary.Pass:
		run.s.canaryMetrics.verdicts.WithLabelValues("pass").Inc()
		if !*run.cfg.AutoPromote {
			run.state = CanaryPassed
			run.mu.Unlock()
			run.s.log.Info("canary passed; waiting for promote")
			return true
		}
		run.mu.Unlock()
		if err := run.s.PromoteCanary("auto"); err != nil {
			run.s.log.Error("canary passed but was not promoted", "error", err.Error())
		}
		return true
	}
	run.mu.Unlock()
	return false
}

// stop ends sampling and the workers and closes the shadows; the
// candidate is the caller's. It may be called more than once.
func (run *canaryRun) stop() {
	run.s.canaryHook.run.CompareAndSwap(run, nil)
	run.cancel()
	run.workers.Wait()
	run.mu.Lock()
	sh, ctl := run.shadow, run.control
	run.shadow, run.control = nil, nil
	run.mu.Unlock()
	if err := errors.Join(sh.close(), ctl.close()); err != nil {
		run.s.log.Warn("canary shadows closed with errors", "error", err.Error())
	}
}

// CanaryStatus is the state of the current or last canary, for the admin
// API and the status page.
type CanaryStatus struct {
	State        string    `json:"state"`
	Source       string    `json:"source,omitempty"` // where the candidate came from: file or posted
	By           string    `json:"by,omitempty"`     // who started it
	Started      time.Time `json:"started,omitzero"`
	Ended        time.Time `json:"ended,omitzero"`
	Note         string    `json:"note,omitempty"`
	Share        float64   `json:"share,omitempty"`
	AnswerShare  float64   `json:"answer_share,omitempty"`
	ControlShare float64   `json:"control_share,omitempty"`
	// Decisions compared and how many differed.
	Decisions        int64   `json:"decisions"`
	DecisionDiffs    int64   `json:"decision_diffs"`
	DecisionDiffRate float64 `json:"decision_diff_rate"`
	// Answers resolved through the candidate: differing from the live
	// answer, failing; and the control's.
	Answers          int64   `json:"answers"`
	AnswerDiffs      int64   `json:"answer_diffs"`
	AnswerDiffRate   float64 `json:"answer_diff_rate"`
	AnswerFailures   int64   `json:"answer_failures"`
	AnswerP99Ms      float64 `json:"answer_p99_ms"`
	Controls         int64   `json:"controls"`
	ControlDiffs     int64   `json:"control_diffs"`
	ControlDiffRate  float64 `json:"control_diff_rate"`
	ControlFailures  int64   `json:"control_failures"`
	ControlP99Ms     float64 `json:"control_p99_ms"`
	DroppedQueueFull int64   `json:"dropped_queue_full"`
	DroppedRate      int64   `json:"dropped_rate_limited"`
	// Verdict is the last one taken.
	Verdict canary.Verdict `json:"verdict"`
	// Diffs broken down: decision diffs by the live rule and by route
	// (live -> candidate), answer diffs by rcode (live -> candidate) and
	// by what differs.
	ByRule  map[string]int64 `json:"decision_diffs_by_rule,omitempty"`
	ByRoute map[string]int64 `json:"decision_diffs_by_route,omitempty"`
	ByRcode map[string]int64 `json:"answer_diffs_by_rcode,omitempty"`
	ByKind  map[string]int64 `json:"answer_diffs_by_kind,omitempty"`
}

// CanaryStatus returns the state of the current canary, or of the last
// one when none runs; State is "none" when there never was one. Safe for
// concurrent use.
func (s *Server) CanaryStatus() CanaryStatus {
	s.canaryMu.Lock()
	run := s.canaryRun
	s.canaryMu.Unlock()
	if run == nil {
		return CanaryStatus{State: CanaryNone}
	}
	return run.status()
}

func (run *canaryRun) status() CanaryStatus {
	run.mu.Lock()
	defer run.mu.Unlock()
	s := run.sample
	st := CanaryStatus{
		State: run.state, Source: run.source, By: run.by, Started: run.started, Ended: run.ended, Note: run.note,
		Share: run.cfg.Share, AnswerShare: run.cfg.AnswerShare, ControlShare: run.cfg.ControlShare,
		Decisions: s.Decisions, DecisionDiffs: s.DecisionDiffs, DecisionDiffRate: rate01(s.DecisionDiffs, s.Decisions),
		Answers: s.Answers, AnswerDiffs: s.AnswerDiffs, AnswerDiffRate: rate01(s.AnswerDiffs, s.Answers), AnswerFailures: s.AnswerFailures,
		AnswerP99Ms: ms(run.ansLat.Snapshot().Quantile(0.99)),
		Controls:    s.Controls, ControlDiffs: s.ControlDiffs, ControlDiffRate: rate01(s.ControlDiffs, s.Controls), ControlFailures: s.ControlFailures,
		ControlP99Ms:     ms(run.ctlLat.Snapshot().Quantile(0.99)),
		DroppedQueueFull: run.dropQueue.Load(), DroppedRate: run.dropRate.Load(),
		Verdict: run.verdict,
		ByRule:  cloneCounts(run.byRule), ByRoute: cloneCounts(run.byRoute), ByRcode: cloneCounts(run.byRcode), ByKind: cloneCounts(run.byKind),
	}
	if st.State == canaryPromoting {
		st.State = CanaryRunning
	}
	return st
}

func rate01(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func cloneCounts(m map[string]int64) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
