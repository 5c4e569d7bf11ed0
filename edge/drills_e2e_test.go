package edge_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/edge/drill"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// Tokens of the drills tests: one per access level.
const (
	drillOps    = "ops-token"    // access: admin
	drillWriter = "writer-token" // access: write
	drillViewer = "viewer-token" // access: read
)

func tokenSum(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// drillAdmin is the admin, metrics, state and drills part of a drills
// test's configuration.
func drillAdmin(stateDir string) string {
	return fmt.Sprintf(`state_dir: %q
metrics: {address: "127.0.0.1:0"}
admin:
  address: "127.0.0.1:0"
  tokens:
    - {id: ops, sha256: %s, zones: ["*"], access: admin}
    - {id: ci, sha256: %s, zones: ["*"], access: write}
    - {id: viewer, sha256: %s, zones: ["*"], access: read}
drills: {max_duration: 10m, default_duration: 1m}
`, stateDir, tokenSum(drillOps), tokenSum(drillWriter), tokenSum(drillViewer))
}

// drillEdge is a test server whose drills run on a fake clock.
type drillEdge struct {
	*testEdge
	clock    *clockwork.FakeClock
	admin    string // the admin listener's host:port
	up       *transporttest.Server
	stateDir string
}

// startDrillEdge runs dnsedge in-process on config (the drills part added),
// listening on loopback, with the drills' deadlines on a fake clock.
func startDrillEdge(t *testing.T, config string) *drillEdge {
	t.Helper()
	dir := t.TempDir()
	cfg, err := edge.Parse("test.yaml", []byte(testListeners+config+drillAdmin(dir)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := new(syncBuffer)
	fc := clockwork.NewFakeClock()
	srv, err := edge.New(cfg, edge.Options{Clock: fc, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addrs := srv.Addrs()
	return &drillEdge{
		testEdge: &testEdge{srv: srv, udp: addrs["udp"][0], tcp: addrs["tcp"][0], logs: logs},
		clock:    fc, admin: srv.AdminAddr().String(), stateDir: dir,
	}
}

// call sends one request to the drills API with token ("" for none) and
// returns the status and body.
func (e *drillEdge) call(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.admin+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// start starts a drill and returns it; anything but 201 fails the test.
func (e *drillEdge) start(t *testing.T, body string) drill.Drill {
	t.Helper()
	status, b := e.call(t, "POST", "/admin/v1/drills", drillOps, body)
	if status != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", body, status, b)
	}
	var d drill.Drill
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("drill: %v: %s", err, b)
	}
	return d
}

// list returns the active drills, as GET shows them to a read grant.
func (e *drillEdge) list(t *testing.T) []drill.Drill {
	t.Helper()
	status, b := e.call(t, "GET", "/admin/v1/drills", drillViewer, "")
	if status != http.StatusOK {
		t.Fatalf("GET: %d %s", status, b)
	}
	var out struct{ Drills []drill.Drill }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.Drills
}

// healthy waits until every path of the default group is closed and not
// demoted, querying meanwhile so that the paths are exercised.
func healthyAgain(t *testing.T, e *drillEdge, paths ...*transport.Path) {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	waitUntil(t, "paths healthy again after the drill", 15*time.Second, func() bool {
		q := new(dns.Msg)
		q.SetQuestion("h1.test.example.", dns.TypeAAAA)
		if _, _, err := c.Exchange(q, e.udp.String()); err != nil {
			t.Fatalf("query while healing: %v", err)
		}
		for _, p := range paths {
			if s := p.Health.Snapshot(); s.State != transport.Closed || s.Demoted {
				return false
			}
		}
		return true
	})
}

// TestDrillPathFaults runs each fault of the path fault tests (TestPathFaults,
// TestGroupPathFaults) as a drill through the admin API against a healthy
// upstream reached over both families, and holds it to their outcome: no
// query fails, only the drilled path is marked down. Then the drill ends,
// by its deadline on the fake clock or by DELETE, and the path heals as it
// would after the real fault.
func TestDrillPathFaults(t *testing.T) {
	tests := []struct {
		name string
		body string
		// outcome checks what the fault made of the IPv6 path after 1,000
		// queries.
		outcome func(t *testing.T, e *drillEdge, v4, v6 *transport.Path)
		// byDelete ends the drill with DELETE instead of its deadline.
		byDelete bool
	}{
		{
			name: "IPv6 blackholed",
			body: `{"target": {"upstream": "up", "family": "v6"}, "fault": {"type": "drop"}, "duration": "5m"}`,
			outcome: func(t *testing.T, e *drillEdge, v4, v6 *transport.Path) {
				waitUntil(t, "IPv6 path demoted or open", 10*time.Second, func() bool {
					s := v6.Health.Snapshot()
					return s.Demoted || s.State != transport.Closed
				})
			},
		},
		{
			name: "IPv6 loses 30 percent",
			body: `{"target": {"upstream": "up", "family": "v6"}, "fault": {"type": "loss", "percent": 30}}`,
			outcome: func(t *testing.T, e *drillEdge, v4, v6 *transport.Path) {
				waitUntil(t, "IPv6 loss estimate up", 10*time.Second, func() bool {
					return v6.Health.Snapshot().Loss >= 0.1
				})
			},
			byDelete: true,
		},
		{
			name: "IPv6 150ms slower",
			body: `{"target": {"upstream": "up", "family": "v6"}, "fault": {"type": "delay", "delay": "150ms"}, "duration": "2m"}`,
			outcome: func(t *testing.T, e *drillEdge, v4, v6 *transport.Path) {
				waitUntil(t, "IPv6 measured slower", 10*time.Second, func() bool {
					return v6.Health.Snapshot().SRTT >= 100*time.Millisecond
				})
				// The slower path is avoided: answers come at the IPv4
				// path's speed.
				lat, failures := load(t, e.udp, 200)
				if len(failures) > 0 {
					t.Fatalf("%d of 200 queries failed: %s", len(failures), failures[0])
				}
				if m := median(lat); m > 50*time.Millisecond {
					t.Fatalf("median latency %v with IPv6 150ms slower: the slow path was not avoided", m)
				}
			},
		},
		{
			name: "IPv6 answers SERVFAIL",
			body: `{"target": {"upstream": "up", "family": "v6"}, "fault": {"type": "servfail"}}`,
			outcome: func(t *testing.T, e *drillEdge, v4, v6 *transport.Path) {
				// Answered at the path, never reaching the upstream (an
				// exchange begun before the drill may still arrive).
				if n := e.up.Count("ipv6", "udp"); n > 2 {
					t.Fatalf("%d IPv6 queries reached the upstream under a SERVFAIL drill", n)
				}
				if n := v6.Health.Snapshot().Outcomes[transport.ClassRcode]; n < 10 {
					t.Fatalf("%d SERVFAIL outcomes on the IPv6 path", n)
				}
			},
			byDelete: true,
		},
		{
			name: "IPv6 UDP truncated",
			body: `{"target": {"upstream": "up", "family": "v6", "protocol": "udp"}, "fault": {"type": "truncate"}}`,
			outcome: func(t *testing.T, e *drillEdge, v4, v6 *transport.Path) {
				if s := v6.Health.Snapshot(); s.Transitions[transport.Open] != 0 {
					t.Fatalf("IPv6 breaker opened on truncated answers: %+v", s)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := transporttest.StartFault(t, upstreamZone)
			boot := transporttest.StartBootstrap(t, bothFamilies)
			e := startDrillEdge(t, seedConfig(boot.Addr(), up.Port()))
			e.up = up
			v4, v6 := pathOf(t, e.testEdge, transport.IPv4), pathOf(t, e.testEdge, transport.IPv6)

			d := e.start(t, tt.body)
			if d.ID == "" || len(d.Paths) == 0 || !d.Ends.After(d.Started) || d.By != "ops" {
				t.Fatalf("drill as started: %+v", d)
			}
			for _, p := range d.Paths {
				if !strings.Contains(p, "[::1]") {
					t.Fatalf("drill on %s, an IPv4 path", p)
				}
			}
			if v6.Fault() == nil || v4.Fault() != nil {
				t.Fatalf("fault on IPv6 %v, on IPv4 %v", v6.Fault(), v4.Fault())
			}
			if got := metric(t, e.testEdge, fmt.Sprintf(`dnsedge_drill_active{fault=%q,path=%q,upstream="up"}`, d.Fault.Type, d.Paths[0])); got != 1 {
				t.Fatalf("dnsedge_drill_active = %v, want 1", got)
			}
			up.ResetCounts()
			_, failures := load(t, e.udp, 1000)
			if len(failures) > 0 {
				t.Fatalf("%d of 1000 queries failed under the drill, first: %s\nlogs:\n%s", len(failures), failures[0], tail(e.logs.String(), 20))
			}
			if s := v4.Health.Snapshot(); s.Transitions[transport.Open] != 0 || s.State != transport.Closed {
				t.Fatalf("IPv4 path breaker: state %s, opened %d times", s.State, s.Transitions[transport.Open])
			}
			tt.outcome(t, e, v4, v6)
			if d.Fault.Type == "truncate" && up.Count("ipv6", "tcp") == 0 {
				t.Fatalf("no truncated answer was retried over TCP on the IPv6 path")
			}

			end := drill.EndExpired
			if tt.byDelete {
				end = drill.EndDeleted
				status, b := e.call(t, "DELETE", "/admin/v1/drills/"+d.ID, drillOps, "")
				if status != http.StatusOK {
					t.Fatalf("DELETE: %d %s", status, b)
				}
				if status, _ := e.call(t, "DELETE", "/admin/v1/drills/"+d.ID, drillOps, ""); status != http.StatusNotFound {
					t.Fatalf("second DELETE: %d, want 404", status)
				}
			} else {
				if ds := e.list(t); len(ds) != 1 || ds[0].ID != d.ID {
					t.Fatalf("active drills before the deadline: %+v", ds)
				}
				e.clock.Advance(d.Ends.Sub(d.Started))
				waitUntil(t, "the drill ends at its deadline", 5*time.Second, func() bool { return len(e.list(t)) == 0 })
			}
			if v6.Fault() != nil {
				t.Fatal("the drill ended but its fault is still on the IPv6 path")
			}
			if got := metric(t, e.testEdge, fmt.Sprintf(`dnsedge_drills_total{end=%q,fault=%q}`, end, d.Fault.Type)); got != 1 {
				t.Fatalf("dnsedge_drills_total{end=%s} = %v, want 1", end, got)
			}
			// The path heals as after the real fault: probes and queries
			// see it answer, its breaker closes, its loss falls.
			healthyAgain(t, e, v4, v6)
			if s := v4.Health.Snapshot(); s.Transitions[transport.Open] != 0 {
				t.Fatalf("IPv4 path breaker opened while IPv6 healed")
			}
			checkDrillAudit(t, e, d.ID, end)
		})
	}
}

// checkDrillAudit checks the audit log holds the drill's start and end.
func checkDrillAudit(t *testing.T, e *drillEdge, id, end string) {
	t.Helper()
	f, err := os.Open(filepath.Join(e.stateDir, edge.OperationsAuditFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var actions []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			Action  string
			Result  string
			Details struct{ Drill drill.Drill }
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if l.Details.Drill.ID == id {
			actions = append(actions, l.Action+":"+l.Result+":"+l.Details.Drill.End)
		}
	}
	if want := "drill.start:ok: drill.end:ok:" + end; strings.Join(actions, " ") != want {
		t.Fatalf("audit of drill %s: %q, want %q", id, actions, want)
	}
}

// TestDrillDeadUpstream: a drop drill on every path of the only upstream
// gives what a dead upstream gives (TestAnswerOrderUpstreamDown): fresh
// cache, then stale answers (EDE 3), the fallback zone, SERVFAIL with EDE
// 22 for the rest; and fresh answers once it ends.
func TestDrillDeadUpstream(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startDrillEdge(t, fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
health:
  initial_timeout: 200ms
  max_timeout: 300ms
server:
  query_timeout: 2s
cache:
  enabled: true
  max_ttl: 1s
  client_timeout: 500ms
  failure_recheck: 300ms
  servfail_ttl: 0s
fallback:
  - origin: internal.
    records: ["* 300 IN A 127.0.0.1"]
`, up.AddrV4()))
	fresh := answerCheck{name: "h1.test.example.", rdata: "192.0.2.2"}
	checkAnswer(t, e.testEdge, "before the drill", fresh)

	d := e.start(t, `{"target": {"upstream": "up"}, "fault": {"type": "drop"}, "duration": "10m"}`)
	if len(d.Paths) != 2 { // the UDP path and its TCP side
		t.Fatalf("drill on %v, want the UDP path and its TCP side", d.Paths)
	}
	stale := fresh
	stale.ede = []uint16{dns.ExtendedErrorCodeStaleAnswer}
	waitUntil(t, "stale answers once the cached one expired", 10*time.Second, func() bool {
		m := ask(t, e.testEdge, fresh.name, dns.TypeA)
		return len(edeCodes(m)) > 0
	})
	checkAnswer(t, e.testEdge, "stale", stale)
	checkAnswer(t, e.testEdge, "fallback", answerCheck{name: "anything.internal.", rdata: "127.0.0.1", ede: []uint16{dns.ExtendedErrorCodeNoReachableAuthority}})
	checkAnswer(t, e.testEdge, "nothing to answer with", answerCheck{name: "h2.test.example.", rcode: dns.RcodeServerFailure, ede: []uint16{dns.ExtendedErrorCodeNoReachableAuthority}})

	e.clock.Advance(10 * time.Minute)
	waitUntil(t, "fresh answers after the drill", 10*time.Second, func() bool {
		m := ask(t, e.testEdge, fresh.name, dns.TypeA)
		return m.Rcode == dns.RcodeSuccess && len(edeCodes(m)) == 0
	})
	checkAnswer(t, e.testEdge, "after the drill", answerCheck{name: "h2.test.example.", rdata: "192.0.2.3"})
}

// TestDrillAccess: starting and ending drills needs access: admin. No
// credentials get 401, a read or write grant 403, and nothing changes;
// bad requests get 400 naming the field, unknown targets 404.
func TestDrillAccess(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	boot := transporttest.StartBootstrap(t, bothFamilies)
	e := startDrillEdge(t, seedConfig(boot.Addr(), up.Port()))
	v4, v6 := pathOf(t, e.testEdge, transport.IPv4), pathOf(t, e.testEdge, transport.IPv6)
	good := `{"target": {"upstream": "up", "family": "v6"}, "fault": {"type": "drop"}}`
	unchanged := func(step string) {
		t.Helper()
		if v4.Fault() != nil || v6.Fault() != nil || len(e.list(t)) != 0 {
			t.Fatalf("%s changed something: faults %v %v, drills %v", step, v4.Fault(), v6.Fault(), e.list(t))
		}
	}
	for _, tt := range []struct {
		name, method, path, token, body string
		status                          int
		field                           string
	}{
		{"no token", "POST", "/admin/v1/drills", "", good, http.StatusUnauthorized, "Authorization"},
		{"unknown token", "POST", "/admin/v1/drills", "nope", good, http.StatusUnauthorized, "Authorization"},
		{"read grant", "POST", "/admin/v1/drills", drillViewer, good, http.StatusForbidden, "Authorization"},
		{"write grant", "POST", "/admin/v1/drills", drillWriter, good, http.StatusForbidden, "Authorization"},
		{"no token lists", "GET", "/admin/v1/drills", "", "", http.StatusUnauthorized, "Authorization"},
		{"no token deletes", "DELETE", "/admin/v1/drills/d-1", "", "", http.StatusUnauthorized, "Authorization"},
		{"read grant deletes", "DELETE", "/admin/v1/drills/d-1", drillViewer, "", http.StatusForbidden, "Authorization"},
		{"unknown drill", "DELETE", "/admin/v1/drills/d-1", drillOps, "", http.StatusNotFound, "id"},
		{"bad fault", "POST", "/admin/v1/drills", drillOps, `{"target": {"upstream": "up"}, "fault": {"type": "melt"}}`, http.StatusBadRequest, "fault.type"},
		{"too long", "POST", "/admin/v1/drills", drillOps, `{"target": {"upstream": "up"}, "fault": {"type": "drop"}, "duration": "11m"}`, http.StatusBadRequest, "duration"},
		{"unknown field", "POST", "/admin/v1/drills", drillOps, `{"target": {"upstream": "up"}, "fault": {"type": "drop"}, "force": true}`, http.StatusBadRequest, "body"},
		{"unknown upstream", "POST", "/admin/v1/drills", drillOps, `{"target": {"upstream": "nope"}, "fault": {"type": "drop"}}`, http.StatusNotFound, "target.upstream"},
		{"no such path", "POST", "/admin/v1/drills", drillOps, `{"target": {"upstream": "up", "address": "192.0.2.9"}, "fault": {"type": "drop"}}`, http.StatusNotFound, "target"},
		{"truncate on TCP", "POST", "/admin/v1/drills", drillOps, `{"target": {"upstream": "up", "protocol": "tcp"}, "fault": {"type": "truncate"}}`, http.StatusBadRequest, "target.protocol"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, b := e.call(t, tt.method, tt.path, tt.token, tt.body)
			var eb struct{ Error, Field string }
			json.Unmarshal(b, &eb)
			if status != tt.status || eb.Field != tt.field || eb.Error == "" {
				t.Fatalf("%d %s, want %d naming %s", status, b, tt.status, tt.field)
			}
			unchanged(tt.name)
		})
	}

	// A path in one drill cannot be in another at the same time.
	d := e.start(t, good)
	status, b := e.call(t, "POST", "/admin/v1/drills", drillOps, `{"target": {"upstream": "up", "address": "::1"}, "fault": {"type": "servfail"}}`)
	if status != http.StatusConflict || !bytes.Contains(b, []byte(d.ID)) {
		t.Fatalf("second drill on the same path: %d %s", status, b)
	}
	if f := v6.Fault(); f == nil || f.Kind != transport.FaultDrop {
		t.Fatalf("the refused drill changed the fault: %+v", f)
	}
	st := e.srv.DrillStatus()
	if len(st.Active) != 1 || st.Active[0].ID != d.ID {
		t.Fatalf("DrillStatus: %+v", st)
	}
}

// TestDrillAcrossReload: a drill outlives a reload that keeps its path and
// ends (gone) with a reload that drops it.
func TestDrillAcrossReload(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	boot := transporttest.StartBootstrap(t, bothFamilies)
	base := seedConfig(boot.Addr(), up.Port())
	e := startDrillEdge(t, base)
	d := e.start(t, `{"target": {"upstream": "up", "family": "v6"}, "fault": {"type": "drop"}}`)
	reload := func(config string) {
		t.Helper()
		cfg, err := edge.Parse("test.yaml", []byte(testListeners+config+drillAdmin(e.stateDir)))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	// A changed upstream section (prefer) builds the upstream again: new
	// path objects for the same paths.
	reload(strings.Replace(base, "url: udp://dns.test", "prefer: ipv4\n    url: udp://dns.test", 1))
	if ds := e.list(t); len(ds) != 1 || ds[0].ID != d.ID {
		t.Fatalf("drills after a reload that keeps the path: %+v", ds)
	}
	v6 := pathOf(t, e.testEdge, transport.IPv6)
	if f := v6.Fault(); f == nil || f.Kind != transport.FaultDrop {
		t.Fatalf("the new generation's IPv6 path has fault %v", f)
	}
	reload(strings.Replace(base, "url: udp://dns.test", "family: ipv4\n    url: udp://dns.test", 1))
	if ds := e.list(t); len(ds) != 0 {
		t.Fatalf("drills after a reload that drops the path: %+v", ds)
	}
	st := e.srv.DrillStatus()
	if len(st.Recent) != 1 || st.Recent[0].End != drill.EndGone {
		t.Fatalf("DrillStatus after the path went: %+v", st)
	}
}
