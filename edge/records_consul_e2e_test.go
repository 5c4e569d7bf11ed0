package edge_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/records/recordstest"
	"github.com/dnsedge/dnsedge/internal/consultest"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// replaceA is a PATCH body making name's A RRset the one address ip.
func replaceA(name, ip string) string {
	return fmt.Sprintf(`{"rrsets":[{"name":%q,"type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":%q}]}]}`, name, ip)
}

// waitA polls e for name's A record until it is want, for up to d; it
// returns how long that took, or -1.
func waitA(t *testing.T, e *testEdge, name, want string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if askA(t, e, name) == want {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return -1
}

// TestRecordsConsulStore: two dnsedge instances with records.store:
// consul on one real agent. A change through A is answered by B over DNS
// within 1 s; two changes from the same ETag sent at once through A and
// B: exactly one wins, the other gets 412, and both instances end on the
// winner; an instance started afresh (empty state directory) loads the
// zone from KV; with the agent stopped, GET and DNS answer the last
// state and a PATCH gets 503 and changes nothing. Every exchange is
// checked against the served OpenAPI document.
func TestRecordsConsulStore(t *testing.T) {
	a := consultest.Start(t)
	up := transporttest.StartFault(t, upstreamZone)
	cfg := func() string {
		return apiConfigIn(up, t.TempDir(), "") + fmt.Sprintf("consul:\n  address: %q\nrecords: {store: consul}\n", a.HTTPAddr)
	}
	ea, eb := startEdge(t, cfg()), startEdge(t, cfg())
	apiA, apiB := apiClient(t, ea.srv.AdminAddr().String()), apiClient(t, eb.srv.AdminAddr().String())

	if r := apiA.Patch("dyn.test.", replaceA("www.dyn.test.", "10.0.0.1"), nil); r.Status != http.StatusOK {
		t.Fatalf("PATCH through A: %d %s", r.Status, r.Body)
	}
	if d := waitA(t, eb, "www.dyn.test.", "10.0.0.1", time.Second); d < 0 {
		t.Fatalf("B does not answer A's change within 1 s: %s", askA(t, eb, "www.dyn.test."))
	} else {
		t.Logf("B answered A's change after %s", d)
	}

	// Concurrent changes from the same ETag, a few rounds.
	for round := range 5 {
		etag := apiA.Get("dyn.test.").ETag()
		deadline := time.Now().Add(time.Second)
		for apiB.Get("dyn.test.").ETag() != etag {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: B's ETag %s, A's %s after 1 s", round, apiB.Get("dyn.test.").ETag(), etag)
			}
			time.Sleep(5 * time.Millisecond)
		}
		var wg sync.WaitGroup
		status := make([]int, 2)
		ips := []string{fmt.Sprintf("10.1.%d.1", round), fmt.Sprintf("10.1.%d.2", round)}
		for i, c := range []*recordstest.Client{apiA, apiB} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status[i] = c.Patch("dyn.test.", replaceA("www.dyn.test.", ips[i]), map[string]string{"If-Match": etag}).Status
			}()
		}
		wg.Wait()
		won := -1
		for i, s := range status {
			switch s {
			case http.StatusOK:
				if won >= 0 {
					t.Fatalf("round %d: both PATCHes from ETag %s won: %v", round, etag, status)
				}
				won = i
			case http.StatusPreconditionFailed:
			default:
				t.Fatalf("round %d: PATCH status %d", round, s)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: neither PATCH from ETag %s won: %v", round, etag, status)
		}
		for i, e := range []*testEdge{ea, eb} {
			if waitA(t, e, "www.dyn.test.", ips[won], time.Second) < 0 {
				t.Fatalf("round %d: instance %d answers %s, want the winner's %s", round, i, askA(t, e, "www.dyn.test."), ips[won])
			}
		}
	}

	// An instance started afresh loads the zone from KV.
	want := apiA.Get("dyn.test.")
	eb.srv.Close()
	eb = startEdge(t, cfg())
	apiB = apiClient(t, eb.srv.AdminAddr().String())
	if got := apiB.Get("dyn.test."); got.Status != http.StatusOK || string(got.Body) != string(want.Body) || got.ETag() != want.ETag() {
		t.Fatalf("restarted B: %d %s %s, want %s %s", got.Status, got.ETag(), got.Body, want.ETag(), want.Body)
	}
	last := askA(t, eb, "www.dyn.test.")

	// The agent stopped: reads answer the last state, writes get 503.
	a.Stop()
	for i, c := range []*recordstest.Client{apiA, apiB} {
		if got := c.Get("dyn.test."); got.Status != http.StatusOK || string(got.Body) != string(want.Body) {
			t.Errorf("instance %d, consul stopped: GET %d %s", i, got.Status, got.Body)
		}
		if r := c.Patch("dyn.test.", replaceA("www.dyn.test.", "10.2.0.1"), nil); r.Status != http.StatusServiceUnavailable {
			t.Errorf("instance %d, consul stopped: PATCH %d %s, want 503", i, r.Status, r.Body)
		}
		if got := c.Get("dyn.test."); string(got.Body) != string(want.Body) {
			t.Errorf("instance %d: a PATCH refused with 503 changed the zone: %s", i, got.Body)
		}
	}
	for i, e := range []*testEdge{ea, eb} {
		if got := askA(t, e, "www.dyn.test."); got != last {
			t.Errorf("instance %d, consul stopped: DNS answers %s, want %s", i, got, last)
		}
	}
}
