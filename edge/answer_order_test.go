package edge_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// ask sends one query over UDP with EDNS and returns the answer.
func ask(t *testing.T, e *testEdge, name string, qtype uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	m, _, err := c.Exchange(q, e.udp.String())
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return m
}

func edeCodes(m *dns.Msg) []uint16 {
	var out []uint16
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				out = append(out, e.InfoCode)
			}
		}
	}
	return out
}

// answerCheck is what one answer must look like.
type answerCheck struct {
	name  string
	rcode int
	aa    bool
	ede   []uint16 // nil: none
	rdata string   // of the first answer record; "" for none
}

func checkAnswer(t *testing.T, e *testEdge, step string, want answerCheck) {
	t.Helper()
	m := ask(t, e, want.name, dns.TypeA)
	var rdata string
	if len(m.Answer) > 0 {
		if a, ok := m.Answer[0].(*dns.A); ok {
			rdata = a.A.String()
		}
	}
	if m.Rcode != want.rcode || m.Authoritative != want.aa || !slices.Equal(edeCodes(m), want.ede) || rdata != want.rdata {
		t.Fatalf("%s: %s: rcode %s aa %v ede %v answer %q; want rcode %s aa %v ede %v answer %q\n%s",
			step, want.name, dns.RcodeToString[m.Rcode], m.Authoritative, edeCodes(m), rdata,
			dns.RcodeToString[want.rcode], want.aa, want.ede, want.rdata, m)
	}
}

// TestAnswerOrderUpstreamDown kills the upstream and checks the order the
// issue sets: fresh cache, then local zones, then stale cache (EDE 3),
// then the fallback zone (EDE 22), then SERVFAIL with an EDE saying why;
// and that fresh answers return with the upstream.
func TestAnswerOrderUpstreamDown(t *testing.T) {
	for _, tt := range []struct {
		name string
		kill func(*transporttest.Server)
		// failEDE is what a name with no other source gets: 23 (Network
		// Error) when the upstream's port refuses, 22 (No Reachable
		// Authority) when it stays silent.
		failEDE uint16
	}{
		{"process stopped", (*transporttest.Server).Stop, dns.ExtendedErrorCodeNetworkError},
		{"blackholed", func(s *transporttest.Server) { s.Set(transporttest.Faults{Down: true}) }, dns.ExtendedErrorCodeNoReachableAuthority},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := transporttest.StartFault(t, upstreamZone)
			e := startEdge(t, fmt.Sprintf(`upstreams:
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
zones:
  - origin: local.test.
    records: ["www 60 IN A 10.0.0.1"]
fallback:
  - origin: internal.
    records: ["* 300 IN A 127.0.0.1"]
`, up.AddrV4()))

			fresh := answerCheck{name: "h1.test.example.", rdata: "192.0.2.2"}
			local := answerCheck{name: "www.local.test.", aa: true, rdata: "10.0.0.1"}
			checkAnswer(t, e, "upstream up", fresh)
			checkAnswer(t, e, "upstream up", local)

			tt.kill(up)
			checkAnswer(t, e, "fresh cache with the upstream down", fresh)
			time.Sleep(1100 * time.Millisecond) // let the 1s max_ttl run out
			stale := fresh
			stale.ede = []uint16{dns.ExtendedErrorCodeStaleAnswer}
			for i := range 3 {
				checkAnswer(t, e, fmt.Sprintf("stale %d", i), stale)
			}
			checkAnswer(t, e, "upstream down", local)
			checkAnswer(t, e, "fallback", answerCheck{name: "anything.internal.", rdata: "127.0.0.1", ede: []uint16{dns.ExtendedErrorCodeNoReachableAuthority}})
			checkAnswer(t, e, "nothing to answer with", answerCheck{name: "h2.test.example.", rcode: dns.RcodeServerFailure, ede: []uint16{tt.failEDE}})

			if tt.name == "process stopped" {
				up.Restart()
			} else {
				up.Set(transporttest.Faults{})
			}
			waitUntil(t, "fresh answers after the upstream came back", 10*time.Second, func() bool {
				m := ask(t, e, fresh.name, dns.TypeA)
				return m.Rcode == dns.RcodeSuccess && len(edeCodes(m)) == 0
			})
			checkAnswer(t, e, "upstream back", answerCheck{name: "h2.test.example.", rdata: "192.0.2.3"})
			checkAnswer(t, e, "upstream back", local)
		})
	}
}

// TestZoneReloadUnderLoad rewrites a zone file 50 times while clients
// query it over UDP without pause: every query is answered, from the old
// zone or the new one, never with an error or a mix.
func TestZoneReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "reload.test.zone")
	write := func(version int) {
		t.Helper()
		text := fmt.Sprintf("$ORIGIN reload.test.\n$TTL 60\n@ IN SOA ns hostmaster %d 3600 600 86400 30\n@ IN NS ns\nns IN A 192.0.2.53\nv IN TXT \"v%d\"\nw IN TXT \"v%d\"\n", version, version, version)
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
zone_poll_interval: 10ms
zones:
  - {origin: reload.test., file: %q}
`, up.AddrV4(), file))

	txt := func(c *dns.Client, name string) (string, error) {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeTXT)
		m, _, err := c.Exchange(q, e.udp.String())
		switch {
		case err != nil:
			return "", err
		case m.Rcode != dns.RcodeSuccess || !m.Authoritative || len(m.Answer) != 1:
			return "", fmt.Errorf("bad answer: %v", m)
		}
		return m.Answer[0].(*dns.TXT).Txt[0], nil
	}

	var (
		stop     atomic.Bool
		answered atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
	)
	deadline := time.Now().Add(60 * time.Second)
	for range 4 {
		wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			for i := 0; !stop.Load() && i < 200000 && time.Now().Before(deadline); i++ {
				got, err := txt(c, "v.reload.test.")
				if err == nil && (len(got) < 2 || got[0] != 'v') {
					err = fmt.Errorf("answer %q", got)
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				answered.Add(1)
			}
		})
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	for v := 1; v <= 50; v++ {
		write(v)
		want := fmt.Sprintf("v%d", v)
		waitUntil(t, "reload "+want, 10*time.Second, func() bool {
			got, err := txt(c, "w.reload.test.")
			return err == nil && got == want
		})
	}
	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d queries failed during 50 reloads; first: %s", len(failures), answered.Load()+int64(len(failures)), failures[0])
	}
	if answered.Load() < 100 {
		t.Fatalf("only %d queries answered during the reloads", answered.Load())
	}
	t.Logf("%d queries answered during 50 reloads", answered.Load())
}
