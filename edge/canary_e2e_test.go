package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/canary"
	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
)

// cdnUpstream is an upstream that answers like a CDN's servers: every A
// query under cdn.test. gets 4 of its 8 addresses, picked at random, in a
// random order, with TTLs jittered around 60 s. Two resolutions of the
// same name rarely agree, which is the noise the canary's control
// measures.
func cdnUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	// UDP and TCP on one port: a query whose UDP attempts time out on a
	// loaded machine is asked again over TCP.
	var pc net.PacketConn
	var ln net.Listener
	for range 10 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(7, 11))
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		qq := q.Question[0]
		if qq.Qtype == dns.TypeA && dns.IsSubDomain("cdn.test.", qq.Name) {
			mu.Lock()
			perm := rng.Perm(8)[:4]
			ttls := []int{rng.IntN(60) + 30, rng.IntN(60) + 30, rng.IntN(60) + 30, rng.IntN(60) + 30}
			mu.Unlock()
			for i, p := range perm {
				rr, _ := dns.NewRR(fmt.Sprintf("%s %d IN A 192.0.2.%d", qq.Name, ttls[i], p+1))
				m.Answer = append(m.Answer, rr)
			}
		} else {
			soa, _ := dns.NewRR("cdn.test. 60 IN SOA ns.cdn.test. host.cdn.test. 1 3600 600 86400 30")
			m.Ns = append(m.Ns, soa)
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// deadUpstream returns a loopback address where nothing listens: a dead
// upstream, whose queries are refused (ICMP port unreachable) at once.
func deadUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	return ap
}

// Tokens of the admin section of canaryConfig.
const (
	opToken    = "operator-secret"
	writeToken = "writer-secret"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// canaryConfig is a configuration with three groups: default (the CDN),
// v2 (another CDN server) and dead; extra is appended.
func canaryConfig(t *testing.T, cdn, v2, dead netip.AddrPort, extra string) *Config {
	t.Helper()
	text := fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
upstreams:
  - {name: cdn, url: "udp://%s"}
  - {name: v2, url: "udp://%s"}
  - {name: dead, url: "udp://%s"}
groups:
  - {name: default, upstreams: [cdn]}
  - {name: v2, upstreams: [v2]}
  - {name: dead, upstreams: [dead]}
bootstrap: ["127.0.0.1:53"]
state_dir: %s
health:
  probe_interval: -1s
  failure_threshold: 3
server:
  query_timeout: 2s
admin:
  address: "127.0.0.1:0"
  tokens:
    - {id: ops, access: admin, zones: ["*"], sha256: "%s"}
    - {id: writer, access: write, zones: ["*"], sha256: "%s"}
canary:
  share: 1
  answer_share: 1
  control_share: 1
  workers: 8
  queue: 4096
  upstream_qps: 100000
  auto_promote: false
  thresholds: {min_samples: 50, window: 30s}
`, cdn, v2, dead, t.TempDir(), sha(opToken), sha(writeToken)) + extra
	cfg, err := Parse("canary.yaml", []byte(text))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

type canaryEdge struct {
	srv   *Server
	udp   netip.AddrPort
	clock *clockwork.FakeClock
	logs  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startCanaryEdge(t *testing.T, cfg *Config, load func() (*Config, error)) *canaryEdge {
	t.Helper()
	logs := new(lockedBuffer)
	clock := clockwork.NewFakeClock()
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Clock: clock, Load: load})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &canaryEdge{srv: srv, udp: srv.Addrs()["udp"][0], clock: clock, logs: logs}
}

// ask sends one A query and returns its answer.
func (e *canaryEdge) ask(t *testing.T, name string) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	m, _, err := c.Exchange(q, e.udp.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// names returns n query names, every fourth under api-v2.
func canaryNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		if i%4 == 3 {
			out[i] = fmt.Sprintf("api-v2.n%d.cdn.test.", i)
		} else {
			out[i] = fmt.Sprintf("n%d.cdn.test.", i)
		}
	}
	return out
}

// waitFor polls cond until it holds, for at most d of real time; each
// round moves the fake clock by step (0: not at all).
func (e *canaryEdge) waitFor(t *testing.T, what string, d, step time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v\nstatus: %+v\nlogs:\n%s", what, d, e.srv.CanaryStatus(), tailLines(e.logs.String(), 15))
		}
		if step > 0 {
			e.clock.Advance(step)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// liveHealth returns the health of every live path, without what moves
// with time alone.
func liveHealth(s *Server) map[string]string {
	out := make(map[string]string)
	for _, p := range s.gen.Load().paths() {
		h := p.Health.Snapshot()
		out[p.Name()] = fmt.Sprint(h.State, h.SRTT, h.Consecutive, h.Outcomes, h.Transitions, h.Events)
	}
	return out
}

func liveCacheLen(t *testing.T, s *Server) int {
	t.Helper()
	n := -1
	each(s.pool, func(_ any, c *cache.Cache) { n = c.Len() })
	if n < 0 {
		t.Fatal("no cache in the pool")
	}
	return n
}

// TestCanary is the canary against an upstream that shuffles its
// answers, jitters their TTLs and answers 4 of 8 addresses at random: an
// unchanged configuration shows no decision diff and answer diffs within
// the control's noise, and passes; a candidate that moves api-v2.* to
// another group differs in the decisions of exactly those queries; a
// candidate that routes everything to a dead group is paused, while
// clients get every answer and the live cache and path health stay as
// they were.
func TestCanary(t *testing.T) {
	cdn, v2, dead := cdnUpstream(t), cdnUpstream(t), deadUpstream(t)
	names := canaryNames(200)
	tests := []struct {
		name      string
		candidate string // appended to the candidate's configuration
		// all: every sample is compared before check (a candidate that
		// fails is slower to compare than the clients are to ask).
		all   bool
		check func(t *testing.T, e *canaryEdge, st CanaryStatus)
	}{
		{name: "unchanged", all: true, check: func(t *testing.T, e *canaryEdge, st CanaryStatus) {
			if st.DecisionDiffs != 0 {
				t.Fatalf("%d decision diffs for an unchanged configuration: %v", st.DecisionDiffs, st.ByRoute)
			}
			if st.Answers != int64(len(names)) || st.Controls != int64(len(names)) {
				t.Fatalf("%d answers and %d controls compared, want %d", st.Answers, st.Controls, len(names))
			}
			if st.ControlDiffRate < 0.5 {
				t.Fatalf("control diff rate %.2f: the upstream's subsets should make most resolutions differ", st.ControlDiffRate)
			}
			if d := st.AnswerDiffRate - st.ControlDiffRate; d > 0.05 || d < -0.05 {
				t.Fatalf("answer diff rate %.3f against the control's %.3f: beyond the noise", st.AnswerDiffRate, st.ControlDiffRate)
			}
			// A shadow resolution may fail on a loaded machine; the
			// upstream itself only ever varies its addresses.
			if k := st.ByKind; k["rcode"]+k["kind"]+k["rrsets"]+k["tc"]+k["ad"] > 5 {
				t.Fatalf("diffs other than RDATA subsets: %v; %+v", k, st)
			}
			// The window passes on the fake clock; with auto_promote off
			// the candidate waits.
			e.waitFor(t, "the canary passes", 10*time.Second, time.Second, func() bool { return e.srv.CanaryStatus().State == CanaryPassed })
		}},
		{name: "api-v2 moved", candidate: `policy:
  version: v2
  rules:
    - name: api-v2
      match: {qname_prefix: ["api-v2."]}
      route: v2
`, all: true, check: func(t *testing.T, e *canaryEdge, st CanaryStatus) {
			want := int64(len(names) / 4)
			if st.Decisions != int64(len(names)) || st.DecisionDiffs != want {
				t.Fatalf("%d of %d decisions differ, want exactly %d (the api-v2 queries)", st.DecisionDiffs, st.Decisions, want)
			}
			if st.ByRoute["default -> v2"] != want || len(st.ByRoute) != 1 {
				t.Fatalf("decision diffs by route %v, want %d from default to v2", st.ByRoute, want)
			}
		}},
		{name: "dead group", candidate: `policy:
  version: dead
  rules:
    - name: all-dead
      match: {qname_suffix: ["cdn.test"]}
      route: dead
`, check: func(t *testing.T, e *canaryEdge, st CanaryStatus) {
			e.waitFor(t, "the canary pauses", 10*time.Second, time.Second, func() bool { return e.srv.CanaryStatus().State == CanaryPaused })
			st = e.srv.CanaryStatus()
			if !strings.Contains(strings.Join(st.Verdict.Breached, ","), "servfail") {
				t.Fatalf("paused for %v (%v), want servfail", st.Verdict.Breached, st.Verdict.Reasons)
			}
			if st.ByRcode["NOERROR -> SERVFAIL"] == 0 {
				t.Fatalf("answer diffs by rcode %v", st.ByRcode)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := canaryConfig(t, cdn, v2, dead, "")
			e := startCanaryEdge(t, live, nil)
			// Warm the cache: the canary's queries are then answered
			// live from it, without a live upstream exchange.
			for _, n := range names {
				if m := e.ask(t, n); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 4 {
					t.Fatalf("warming %s: %s with %d answers", n, dns.RcodeToString[m.Rcode], len(m.Answer))
				}
			}
			health, cached := liveHealth(e.srv), liveCacheLen(t, e.srv)
			cand := canaryConfig(t, cdn, v2, dead, tt.candidate)
			if _, err := e.srv.StartCanary(CanaryRequest{Config: cand, By: "test"}); err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				if m := e.ask(t, n); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 4 {
					t.Fatalf("client got %s with %d answers for %s during the canary", dns.RcodeToString[m.Rcode], len(m.Answer), n)
				}
			}
			if tt.all {
				e.waitFor(t, "every sample compared", 20*time.Second, 0, func() bool {
					st := e.srv.CanaryStatus()
					return st.Decisions == int64(len(names)) && st.Answers+st.DroppedRate == int64(len(names))
				})
			}
			st := e.srv.CanaryStatus()
			if st.DroppedQueueFull != 0 || st.DroppedRate != 0 {
				t.Fatalf("samples dropped: %d queue full, %d rate limited", st.DroppedQueueFull, st.DroppedRate)
			}
			tt.check(t, e, st)
			if got := liveHealth(e.srv); fmt.Sprint(got) != fmt.Sprint(health) {
				t.Fatalf("live path health changed by the canary:\nbefore %v\nafter  %v", health, got)
			}
			if n := liveCacheLen(t, e.srv); n != cached {
				t.Fatalf("live cache holds %d entries after the canary, %d before", n, cached)
			}
			if err := e.srv.AbortCanary("test over"); err != nil {
				t.Fatal(err)
			}
			if st := e.srv.CanaryStatus(); st.State != CanaryAborted {
				t.Fatalf("state after abort: %s", st.State)
			}
		})
	}
}

// TestCanaryDecisionsInline: a sample that asks only for the decision
// diff is compared on the query's goroutine before its answer goes out.
// The run here has no workers and a queue nobody reads, so a sample sent
// to the queue would be dropped instead of counted.
func TestCanaryDecisionsInline(t *testing.T) {
	cdn, v2, dead := cdnUpstream(t), cdnUpstream(t), deadUpstream(t)
	names := canaryNames(40)
	e := startCanaryEdge(t, canaryConfig(t, cdn, v2, dead, ""), nil)
	cand, err := e.srv.build(canaryConfig(t, cdn, v2, dead, `policy:
  version: v2
  rules:
    - name: api-v2
      match: {qname_prefix: ["api-v2."]}
      route: v2
`))
	if err != nil {
		t.Fatal(err)
	}
	defer cand.close()
	run := &canaryRun{
		s: e.srv, live: e.srv.gen.Load(), cand: cand, state: CanaryRunning,
		cfg:    canary.Config{Share: 1, AnswerShare: 1e-12, ControlShare: 1e-12},
		jobs:   make(chan shadowJob),
		byRule: make(map[string]int64), byRoute: make(map[string]int64), byRcode: make(map[string]int64), byKind: make(map[string]int64),
	}
	run.ctx, run.cancel = context.WithCancel(context.Background())
	defer run.cancel()
	e.srv.canaryHook.run.Store(run)
	defer e.srv.canaryHook.run.CompareAndSwap(run, nil)
	for i, n := range names {
		if m := e.ask(t, n); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 4 {
			t.Fatalf("client got %s with %d answers for %s during the canary", dns.RcodeToString[m.Rcode], len(m.Answer), n)
		}
		st := run.status()
		if st.Decisions != int64(i+1) || st.DroppedQueueFull != 0 {
			t.Fatalf("after %d answers: %d decisions counted, %d samples dropped", i+1, st.Decisions, st.DroppedQueueFull)
		}
	}
	st := run.status()
	want := int64(len(names) / 4)
	if st.DecisionDiffs != want || st.ByRoute["default -> v2"] != want || st.ByRule["(no rule)"] != want {
		t.Fatalf("%d decision diffs (by route %v, by rule %v), want %d from default to v2", st.DecisionDiffs, st.ByRoute, st.ByRule, want)
	}
	if st.Answers != 0 {
		t.Fatalf("%d answers resolved", st.Answers)
	}
}

// TestCanaryPromote: a canary that is promoted serves its configuration
// to every client, and the configuration before it is watched.
func TestCanaryPromote(t *testing.T) {
	cdn, v2, dead := cdnUpstream(t), cdnUpstream(t), deadUpstream(t)
	e := startCanaryEdge(t, canaryConfig(t, cdn, v2, dead, ""), nil)
	live := e.srv.gen.Load()
	cand := canaryConfig(t, cdn, v2, dead, "policy:\n  version: v2\n  rules:\n    - {name: api-v2, match: {qname_prefix: [\"api-v2.\"]}, route: v2}\n")
	if _, err := e.srv.StartCanary(CanaryRequest{Config: cand}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.StartCanary(CanaryRequest{Config: cand}); err != ErrCanaryActive {
		t.Fatalf("a second canary: %v, want ErrCanaryActive", err)
	}
	if err := e.srv.PromoteCanary("test"); err != nil {
		t.Fatal(err)
	}
	if e.srv.gen.Load() == live || e.srv.gen.Load().cfg != cand {
		t.Fatal("the candidate is not live after promote")
	}
	if st := e.srv.CanaryStatus(); st.State != CanaryPromoted {
		t.Fatalf("state %s after promote", st.State)
	}
	if rs := e.srv.RollbackStatus(); !rs.Watching {
		t.Fatalf("no rollback watch after a promotion: %+v", rs)
	}
	if m := e.ask(t, "api-v2.x.cdn.test."); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("after promote: %s", dns.RcodeToString[m.Rcode])
	}
	if err := e.srv.PromoteCanary("test"); err != ErrNoCanary {
		t.Fatalf("promote twice: %v", err)
	}
}

// TestRollback is a plain reload that routes every query to a dead
// group: within 10 s of the watch's clock dnsedge swaps the previous
// configuration back in, logs why and counts it; clients are answered
// again.
func TestRollback(t *testing.T) {
	cdn, v2, dead := cdnUpstream(t), cdnUpstream(t), deadUpstream(t)
	extra := "rollback: {watch: 60s, interval: 1s, min_samples: 20}\n"
	e := startCanaryEdge(t, canaryConfig(t, cdn, v2, dead, extra), nil)
	for i := range 50 {
		e.ask(t, fmt.Sprintf("warm%d.cdn.test.", i))
	}
	before := e.srv.gen.Load()
	bad := canaryConfig(t, cdn, v2, dead, extra+"policy:\n  version: dead\n  rules:\n    - {name: all-dead, match: {qname_suffix: [cdn.test]}, route: dead}\n")
	if err := e.srv.Reload(bad); err != nil {
		t.Fatal(err)
	}
	if e.srv.gen.Load() == before {
		t.Fatal("reload did not commit")
	}
	// Clients ask new names: every one goes to the dead group.
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := new(dns.Msg)
			q.SetQuestion(fmt.Sprintf("new%d.cdn.test.", i), dns.TypeA)
			c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
			c.Exchange(q, e.udp.String())
		}()
	}
	wg.Wait()
	start := e.clock.Now()
	e.waitFor(t, "rolled back", 10*time.Second, time.Second, func() bool { return e.srv.gen.Load() == before })
	if took := e.clock.Since(start); took > 10*time.Second {
		t.Fatalf("rolled back after %v of the watch's clock", took)
	}
	rs := e.srv.RollbackStatus()
	if rs.Last == nil || rs.Watching {
		t.Fatalf("rollback status %+v", rs)
	}
	// Generations 1 (start), 2 (the reload), 3 (the first one again).
	if st := e.srv.Status(e.clock.Now()); st.Rollback == "none" || st.Generation.Seq != 3 {
		t.Fatalf("/status after the rollback: rollback %v, generation %+v (want 3)", st.Rollback, st.Generation)
	}
	var m dto.Metric
	if err := e.srv.canaryMetrics.rollbacks.WithLabelValues(rs.Last.Reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Fatalf("dnsedge_rollbacks_total{reason=%q} = %v", rs.Last.Reason, n)
	}
	if !strings.Contains(e.logs.String(), `"msg":"rolled back to the previous configuration","reason":"`+rs.Last.Reason) {
		t.Fatalf("no log line for the rollback:\n%s", tailLines(e.logs.String(), 10))
	}
	audit, err := readFileIn(e.srv.gen.Load().cfg.stateDir(), OperationsAuditFile)
	if err != nil || !strings.Contains(audit, `"action":"rollback.auto","result":"ok","details":{"reason":"`+rs.Last.Reason) {
		t.Fatalf("no audit line for the rollback (%v):\n%s", err, audit)
	}
	if m := e.ask(t, "after.cdn.test."); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 4 {
		t.Fatalf("after the rollback: %s with %d answers", dns.RcodeToString[m.Rcode], len(m.Answer))
	}
}

// TestRollbackKeepsGoodReload: a reload that does as well as before is
// kept when the watch ends, and its predecessor is closed.
func TestRollbackKeepsGoodReload(t *testing.T) {
	cdn, v2, dead := cdnUpstream(t), cdnUpstream(t), deadUpstream(t)
	extra := "rollback: {watch: 5s, interval: 1s, min_samples: 20}\n"
	e := startCanaryEdge(t, canaryConfig(t, cdn, v2, dead, extra), nil)
	for i := range 30 {
		e.ask(t, fmt.Sprintf("a%d.cdn.test.", i))
	}
	if err := e.srv.Reload(canaryConfig(t, cdn, v2, dead, extra+"log: {level: debug}\n")); err != nil {
		t.Fatal(err)
	}
	after := e.srv.gen.Load()
	for i := range 30 {
		e.ask(t, fmt.Sprintf("b%d.cdn.test.", i))
	}
	e.waitFor(t, "watch over", 10*time.Second, time.Second, func() bool { return !e.srv.RollbackStatus().Watching })
	if e.srv.gen.Load() != after || e.srv.RollbackStatus().Last != nil {
		t.Fatalf("a good reload was rolled back: %+v", e.srv.RollbackStatus().Last)
	}
}

// TestRollbackAfterPromotion: a candidate routed to a dead group that an
// operator promotes anyway is rolled back like a bad reload.
func TestRollbackAfterPromotion(t *testing.T) {
	cdn, v2, dead := cdnUpstream(t), cdnUpstream(t), deadUpstream(t)
	extra := "rollback: {watch: 60s, interval: 1s, min_samples: 20}\n"
	e := startCanaryEdge(t, canaryConfig(t, cdn, v2, dead, extra), nil)
	for i := range 30 {
		e.ask(t, fmt.Sprintf("warm%d.cdn.test.", i))
	}
	live := e.srv.gen.Load()
	bad := canaryConfig(t, cdn, v2, dead, extra+"policy:\n  version: dead\n  rules:\n    - {name: all-dead, match: {qname_suffix: [cdn.test]}, route: dead}\n")
	if _, err := e.srv.StartCanary(CanaryRequest{Config: bad}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.PromoteCanary("operator"); err != nil {
		t.Fatal(err)
	}
	if e.srv.gen.Load() == live {
		t.Fatal("not promoted")
	}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := new(dns.Msg)
			q.SetQuestion(fmt.Sprintf("p%d.cdn.test.", i), dns.TypeA)
			(&dns.Client{Net: "udp", Timeout: 3 * time.Second}).Exchange(q, e.udp.String())
		}()
	}
	wg.Wait()
	e.waitFor(t, "rolled back", 10*time.Second, time.Second, func() bool { return e.srv.gen.Load() == live })
	if m := e.ask(t, "back.cdn.test."); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("after the rollback: %s", dns.RcodeToString[m.Rcode])
	}
}
