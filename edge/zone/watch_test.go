package zone

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/leaktest"
)

// version returns a zone file whose www A record is addr.
func version(addr string) string {
	return fmt.Sprintf("$TTL 60\n@ SOA ns hm 1 2 3 4 5\nwww A %s\nstatic TXT \"same in every version\"\n", addr)
}

// wwwA asks h for www.example. A and returns the address answered, or a
// description of what came back instead.
func wwwA(t testing.TB, h pipeline.Handler) string {
	m, err := h.ServeDNS(context.Background(), request("www.example.", dns.TypeA, "192.0.2.1", ""))
	switch {
	case err != nil:
		return "error: " + err.Error()
	case m.Rcode != dns.RcodeSuccess || !m.Authoritative || len(m.Answer) != 1:
		return "bad answer: " + m.String()
	}
	a, ok := m.Answer[0].(*dns.A)
	if !ok {
		return "bad answer: " + m.String()
	}
	return a.A.String()
}

// eventually polls cond every few milliseconds until it holds or 10s
// pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "example.zone")
	writeFile(t, path, version("192.0.2.1"))
	reg := prometheus.NewPedanticRegistry()
	z, err := New(Config{Zones: []ZoneSpec{{Origin: "example.", File: path}}, PollInterval: time.Hour}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	h := z.Middleware()(&fakeNext{t: t})
	if got := wwwA(t, h); got != "192.0.2.1" {
		t.Fatalf("first version: %s", got)
	}

	writeFile(t, path, version("192.0.2.2"))
	if err := z.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := wwwA(t, h); got != "192.0.2.2" {
		t.Fatalf("after reload: %s", got)
	}

	writeFile(t, path, "$TTL 60\nwww A 192.0.2.3\nmail MX ten mail\n")
	err = z.Reload()
	if err == nil || !strings.Contains(err.Error(), path+":3: ") {
		t.Fatalf("broken file: error %v, want it to name %s:3", err, path)
	}
	if got := wwwA(t, h); got != "192.0.2.2" {
		t.Fatalf("broken file replaced the zone: %s", got)
	}
	// Asking again reports the same problem, counted once.
	if err := z.Reload(); err == nil || !strings.Contains(err.Error(), path+":3: ") {
		t.Fatalf("second reload of the broken file: %v", err)
	}
	m := gather(t, reg)
	if m["dnsedge_zone_reload_errors_total"] != 1 || m["dnsedge_zone_reloads_total"] != 1 {
		t.Errorf("metrics %v, want 1 reload and 1 reload error", m)
	}

	writeFile(t, path, version("192.0.2.4"))
	if err := z.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := wwwA(t, h); got != "192.0.2.4" {
		t.Fatalf("after the fix: %s", got)
	}
	m = gather(t, reg)
	if m["dnsedge_zone_reloads_total"] != 2 || m["dnsedge_zone_records/shared/example."] != 3 {
		t.Errorf("metrics %v, want 2 reloads and 3 records", m)
	}

	// A file that disappears keeps its zone too.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := z.Reload(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("missing file: %v", err)
	}
	if got := wwwA(t, h); got != "192.0.2.4" {
		t.Fatalf("missing file replaced the zone: %s", got)
	}

	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if got := wwwA(t, h); got != "192.0.2.4" {
		t.Fatalf("after Close: %s", got)
	}
}

// TestCloseStopsPoller checks that Close ends the poller. It is not
// parallel, so no other test's goroutine can pass for a leak.
func TestCloseStopsPoller(t *testing.T) {
	before := leaktest.Snapshot()
	path := filepath.Join(t.TempDir(), "example.zone")
	writeFile(t, path, version("192.0.2.1"))
	z, err := New(Config{Zones: []ZoneSpec{{Origin: "example.", File: path}}, PollInterval: time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, version("192.0.2.2"))
	eventually(t, "the poller to run", func() bool { return z.reloads.Load() == 1 })
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	leaktest.Check(t, before, 5*time.Second)
}

// TestPollRetriesOnlyOnChange checks that the poller does not parse a
// broken file again until it changes.
func TestPollRetriesOnlyOnChange(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "example.zone")
	writeFile(t, path, version("192.0.2.1"))
	z, err := New(Config{Zones: []ZoneSpec{{Origin: "example.", File: path}}, PollInterval: time.Hour}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	writeFile(t, path, "www A x\n")
	for range 3 {
		if err := z.check(false); err == nil || !strings.Contains(err.Error(), path+":1: ") {
			t.Fatalf("check: %v", err)
		}
	}
	if n := z.reloadErrors.Load(); n != 1 {
		t.Errorf("%d reload errors for one broken content, want 1", n)
	}
	writeFile(t, path, version("192.0.2.5"))
	if err := z.check(false); err != nil {
		t.Fatal(err)
	}
	if got := wwwA(t, z.Middleware()(&fakeNext{t: t})); got != "192.0.2.5" {
		t.Errorf("after the fix: %s", got)
	}
}

// TestPollSymlinkSwap swaps a zone file the way Kubernetes updates a
// ConfigMap volume: the file is a symlink through "..data", itself a
// symlink to a timestamped directory, and an update renames a new
// "..data" over the old one.
func TestPollSymlinkSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	publish := func(gen, data string) {
		t.Helper()
		d := filepath.Join(dir, "..gen_"+gen)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "example.zone"), data)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink("..gen_"+gen, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("1", version("192.0.2.1"))
	path := filepath.Join(dir, "example.zone")
	if err := os.Symlink("..data/example.zone", path); err != nil {
		t.Fatal(err)
	}
	z, err := New(Config{Zones: []ZoneSpec{{Origin: "example.", File: path}}, PollInterval: 10 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := z.Middleware()(&fakeNext{t: t})
	if got := wwwA(t, h); got != "192.0.2.1" {
		t.Fatalf("first version: %s", got)
	}
	publish("2", version("192.0.2.2")) // same size as the first
	eventually(t, "the poller to load the new version", func() bool { return wwwA(t, h) == "192.0.2.2" })
	publish("3", "www A broken\n")
	eventually(t, "the poller to see the broken version", func() bool { return z.reloadErrors.Load() == 1 })
	if got := wwwA(t, h); got != "192.0.2.2" {
		t.Fatalf("broken version replaced the zone: %s", got)
	}
	publish("4", version("192.0.2.4"))
	eventually(t, "the poller to load the fixed version", func() bool { return wwwA(t, h) == "192.0.2.4" })
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReloadUnderLoad reloads a zone file 50 times, alternating two valid
// versions, while 8 goroutines query it: every answer must come whole
// from one of the versions.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "example.zone")
	versions := [2]string{version("192.0.2.1"), version("192.0.2.2")}
	writeFile(t, path, versions[0])
	z, err := New(Config{Zones: []ZoneSpec{{Origin: "example.", File: path}}, PollInterval: time.Hour}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	h := z.Middleware()(&fakeNext{t: t})

	const workers, maxQueries = 8, 200_000
	var (
		done    = make(chan struct{})
		wg      sync.WaitGroup
		queries atomic.Int64
		wrong   atomic.Int64
		seen    [2]atomic.Int64
		first   sync.Once
		example string
	)
	deadline := time.Now().Add(30 * time.Second)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < maxQueries && time.Now().Before(deadline); i++ {
				select {
				case <-done:
					return
				default:
				}
				queries.Add(1)
				var got string
				if (i+w)%2 == 0 {
					got = wwwA(t, h)
				} else {
					got = staticTXT(h)
				}
				switch got {
				case "192.0.2.1":
					seen[0].Add(1)
				case "192.0.2.2":
					seen[1].Add(1)
				case "same in every version":
				default:
					wrong.Add(1)
					first.Do(func() { example = got })
				}
			}
		}()
	}
	for i := 1; i <= 50; i++ {
		writeFile(t, path, versions[i%2])
		if err := z.Reload(); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
	}
	close(done)
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d of %d answers wrong, e.g. %s", n, queries.Load(), example)
	}
	if n := z.reloads.Load(); n != 50 {
		t.Errorf("%d reloads, want 50", n)
	}
	if seen[0].Load() == 0 || seen[1].Load() == 0 {
		t.Logf("only one version answered (%d, %d) in %d queries", seen[0].Load(), seen[1].Load(), queries.Load())
	}
	t.Logf("%d queries, versions answered %d/%d", queries.Load(), seen[0].Load(), seen[1].Load())
}

// staticTXT asks h for the TXT record every version has.
func staticTXT(h pipeline.Handler) string {
	m, err := h.ServeDNS(context.Background(), request("static.example.", dns.TypeTXT, "192.0.2.1", ""))
	switch {
	case err != nil:
		return "error: " + err.Error()
	case m.Rcode != dns.RcodeSuccess || !m.Authoritative || len(m.Answer) != 1:
		return "bad answer: " + m.String()
	}
	txt, ok := m.Answer[0].(*dns.TXT)
	if !ok || len(txt.Txt) != 1 {
		return "bad answer: " + m.String()
	}
	return txt.Txt[0]
}

// TestMetricsNextGeneration checks that the zones of a new configuration
// generation take over the metrics of the previous one in a registry.
func TestMetricsNextGeneration(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	cfg := Config{
		Zones:    []ZoneSpec{{Origin: "example.", Records: []string{"www A 192.0.2.1"}}},
		Fallback: []ZoneSpec{{Origin: "example.", Records: []string{"www A 192.0.2.1", "mail A 192.0.2.2"}}},
		Tenants: []TenantSpec{{Name: "acme", ClientIDs: []string{"acme"},
			Zones: []ZoneSpec{{Origin: "acme.", Records: []string{"www A 10.0.0.1"}}}}},
	}
	for range 2 {
		z, err := New(cfg, nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		z.Close()
	}
	m := gather(t, reg)
	for key, want := range map[string]float64{
		"dnsedge_zone_records/shared/example.":   2,
		"dnsedge_zone_records/fallback/example.": 3,
		"dnsedge_zone_records/tenant/acme/acme.": 2,
		"dnsedge_zone_reloads_total":             0,
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
}
