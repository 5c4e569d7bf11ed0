package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/consul"
	"github.com/dnsedge/dnsedge/internal/consultest"
)

// writeVersion writes a version directory with files route.yaml and,
// unless weight is empty, weight.yaml.
func writeVersion(t *testing.T, route, weight string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "route.yaml"), []byte(route), 0o644); err != nil {
		t.Fatal(err)
	}
	if weight != "" {
		if err := os.WriteFile(filepath.Join(dir, "weight.yaml"), []byte(weight), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const kvRouteV1 = `sticky: source
rules:
  - name: api
    match: {qname_suffix: [test.example]}
    route: default
`

const kvRouteV2 = `sticky: source
rules:
  - name: api
    match: {qname_suffix: [test.example]}
  - name: marker
    match: {qname_suffix: [marker.example]}
    answer: {records: ["marker.example. 60 IN A 192.0.2.99"]}
`

const kvWeightV2 = `splits:
  api: {percent: 50, canary: canary, base: default}
`

// kvWeightBad has a percent out of range on line 3.
const kvWeightBad = `splits:
  api:
    percent: 150
    canary: canary
    base: default
`

// askFrom asks name (A) over UDP from the loopback address from.
func askFrom(addr string, from string, name string) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(from)}}}
	m, _, err := c.Exchange(q, addr)
	return m, err
}

func firstA(m *dns.Msg) string {
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return dns.RcodeToString[m.Rcode]
}

// TestConsulPolicyKV is the KV acceptance test: two dnsedge instances
// take their policy from a real agent's KV store and serve a steady
// query load. Version v2 pushed with the push command's code is in force
// on both within 1 s, no query is lost, and both put every client on the
// same side of its split. An invalid v3 is refused by the push, and,
// written and activated behind its back, by both instances, which keep
// v2 and report the key and line; setting active back to v2 is a
// rollback.
func TestConsulPolicyKV(t *testing.T) {
	a := consultest.Start(t)
	c := consulClient(t, a)
	base, canary := policyUpstreams(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const prefix = consul.DefaultPolicyPrefix
	if err := consul.Push(ctx, c, prefix, writeVersion(t, kvRouteV1, ""), "v1"); err != nil {
		t.Fatalf("push v1: %v", err)
	}
	cfg := policyGroups(base, canary) + fmt.Sprintf("consul:\n  address: %q\n  policy: {enabled: true}\n", a.HTTPAddr)
	edges := []*testEdge{startEdge(t, cfg), startEdge(t, cfg)}
	for i, e := range edges {
		if m, err := askFrom(e.udp.String(), "127.0.0.1", "www.test.example."); err != nil || firstA(m) != "192.0.2.1" {
			t.Fatalf("edge %d under v1: %v %v", i, m, err)
		}
	}

	// Load: every edge, from 127.0.0.1, bounded in count and time.
	var sent, lost atomic.Int64
	var lostMu sync.Mutex
	var lostWhy []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, e := range edges {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < 20000; n++ {
					select {
					case <-stop:
						return
					default:
					}
					sent.Add(1)
					m, err := askFrom(e.udp.String(), "127.0.0.1", "www.test.example.")
					if err != nil || m.Rcode != dns.RcodeSuccess || (firstA(m) != "192.0.2.1" && firstA(m) != "192.0.2.2") {
						lost.Add(1)
						lostMu.Lock()
						lostWhy = append(lostWhy, fmt.Sprintf("%v %v", err, m))
						lostMu.Unlock()
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
		}
	}
	endLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer endLoad()

	if err := consul.Push(ctx, c, prefix, writeVersion(t, kvRouteV2, kvWeightV2), "v2"); err != nil {
		t.Fatalf("push v2: %v", err)
	}
	pushed := time.Now()
	var wg2 sync.WaitGroup
	took := make([]time.Duration, len(edges))
	for i, e := range edges {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			for time.Since(pushed) < 5*time.Second {
				if m, err := askFrom(e.udp.String(), "127.0.0.1", "marker.example."); err == nil && firstA(m) == "192.0.2.99" {
					took[i] = time.Since(pushed)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			took[i] = -1
		}()
	}
	wg2.Wait()
	for i, d := range took {
		if d < 0 || d > time.Second {
			t.Errorf("edge %d: v2 in force after %s, want within 1 s", i, d)
		}
	}
	t.Logf("v2 in force on the two edges after %s and %s", took[0], took[1])

	// The same side on both edges for each of 100 clients.
	sides := map[string]int{}
	for i := 2; i < 102; i++ {
		from := fmt.Sprintf("127.0.0.%d", i)
		var got [2]string
		for j, e := range edges {
			m, err := askFrom(e.udp.String(), from, "www.test.example.")
			if err != nil {
				t.Fatalf("client %s: %v", from, err)
			}
			got[j] = firstA(m)
		}
		if got[0] != got[1] {
			t.Errorf("client %s: edge 0 says %s, edge 1 %s", from, got[0], got[1])
		}
		sides[got[0]]++
	}
	if sides["192.0.2.1"] < 20 || sides["192.0.2.2"] < 20 {
		t.Errorf("split sides over 100 clients: %v, want about half each", sides)
	}

	// An invalid v3: the push refuses it and writes nothing.
	bad := writeVersion(t, kvRouteV2, kvWeightBad)
	err := consul.Push(ctx, c, prefix, bad, "v3")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(bad, "weight.yaml")+":3:") || !strings.Contains(err.Error(), "splits.api.percent") {
		t.Fatalf("push of an invalid v3: %v; want the weight file, line 3 and the field", err)
	}
	if p, _, err := c.KV().Get(prefix+"v3/route", nil); err != nil || p != nil {
		t.Fatalf("a refused push wrote %v (%v)", p, err)
	}
	// Written and activated behind the push's back: both edges refuse it.
	for k, v := range map[string]string{"v3/route": kvRouteV2, "v3/weight": kvWeightBad} {
		if _, err := c.KV().Put(&api.KVPair{Key: prefix + k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := consul.Activate(ctx, c, prefix, "v3"); err != nil {
		t.Fatal(err)
	}
	for i, e := range edges {
		within(t, fmt.Sprintf("edge %d reports v3 invalid", i), 2*time.Second, func() bool {
			return strings.Contains(scrape(t, e), `dnsedge_consul_policy_status{active="v3",key="gray/strategy/v3/weight",state="invalid"} 1`)
		})
		metrics := scrape(t, e)
		for _, want := range []string{`dnsedge_policy_info{version="v2"} 1`, "dnsedge_consul_policy_errors_total 1"} {
			if !strings.Contains(metrics, want) {
				t.Errorf("edge %d metrics lack %s:\n%s", i, want, grepLines(metrics, "policy"))
			}
		}
		if logs := e.logs.String(); !strings.Contains(logs, "gray/strategy/v3/weight:3:14: splits.api.percent") {
			t.Errorf("edge %d log does not name the key, line and field of the error:\n%s", i, grepLines(logs, "v3"))
		}
		if m, err := askFrom(e.udp.String(), "127.0.0.1", "marker.example."); err != nil || firstA(m) != "192.0.2.99" {
			t.Errorf("edge %d left v2: %v %v", i, m, err)
		}
		st := policyStatus(t, e)
		if st.Source != "consul" || st.InForce != "v2" || st.Active != "v3" || st.Key != "gray/strategy/v3/weight" ||
			!strings.Contains(st.Error, "gray/strategy/v3/weight:3:14: splits.api.percent") {
			t.Errorf("edge %d /status/policy: %+v", i, st)
		}
	}

	// Rollback: active back to v2.
	if err := consul.Activate(ctx, c, prefix, "v2"); err != nil {
		t.Fatal(err)
	}
	for i, e := range edges {
		within(t, fmt.Sprintf("edge %d back on v2", i), 2*time.Second, func() bool {
			return strings.Contains(scrape(t, e), `dnsedge_consul_policy_status{active="v2",key="",state="ok"} 1`)
		})
	}
	endLoad()
	if n := lost.Load(); n > 0 {
		t.Errorf("%d of %d queries lost while versions changed: %v", n, sent.Load(), lostWhy[:min(len(lostWhy), 5)])
	}
	t.Logf("%d queries under load, none lost", sent.Load())
}

// policyStatus reads e's /status/policy.
func policyStatus(t *testing.T, e *testEdge) (st struct {
	Source, Prefix, InForce, Active, Error, Key string
}) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + e.srv.MetricsAddr().String() + "/status/policy")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw struct {
		Source  string `json:"source"`
		Prefix  string `json:"prefix"`
		InForce string `json:"in_force"`
		Active  string `json:"active"`
		Error   string `json:"error"`
		Key     string `json:"key"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	st.Source, st.Prefix, st.InForce, st.Active, st.Error, st.Key = raw.Source, raw.Prefix, raw.InForce, raw.Active, raw.Error, raw.Key
	return st
}
