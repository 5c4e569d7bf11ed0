package consul

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/internal/leaktest"
)

// TestCloseLeavesNoGoroutines: a backend with service and node watches,
// and a policy watcher, leave nothing running once closed (the HTTP
// client's idle connections and the fake agent aside).
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := leaktest.Snapshot()
	f := &fakeConsul{services: map[string][]*api.ServiceEntry{"web": {entry("n1", "10.0.0.1", "", 80, api.HealthPassing)}}}
	client := startFake(t, f)
	b, err := New(Config{Address: "127.0.0.1:8500"}, Options{Client: client, Clock: clockwork.NewRealClock()})
	if err != nil {
		t.Fatal(err)
	}
	ask(t, b, "web.service.consul.", dns.TypeA, 0)
	ask(t, b, "n1.node.consul.", dns.TypeA, 0)
	pw := NewPolicyWatcher(Config{Address: "127.0.0.1:8500", FirstWait: 10 * time.Millisecond}, client, nil, nil, nil)
	running := 0
	for _, g := range strings.Split(stacksNow(), "\n\n") {
		if strings.Contains(g, "edge/consul.(*watch") || strings.Contains(g, "edge/consul.(*Backend).reap") {
			running++
		}
	}
	if running < 4 {
		t.Fatalf("%d watch and reaper goroutines seen before Close, want 4: this check could not fail", running)
	}
	b.Close()
	pw.Close()
	leaktest.Check(t, before, 5*time.Second, "net/http.(*persistConn)", "net/http.(*conn).serve", "net/http/httptest", "net/http.(*Server).Serve")
}

func stacksNow() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
