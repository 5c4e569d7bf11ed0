package consul

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// ourGoroutines lists the stacks of goroutines running this package's
// code (tests excluded).
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "dnsedge/edge/consul.") && !strings.Contains(g, "_test.go") {
			out = append(out, g)
		}
	}
	return out
}

// TestCloseLeavesNoGoroutines: a backend with service and node watches,
// and a policy watcher, leave nothing running once closed.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	f := &fakeConsul{services: map[string][]*api.ServiceEntry{"web": {entry("n1", "10.0.0.1", "", 80, api.HealthPassing)}}}
	client := startFake(t, f)
	b, err := New(Config{Address: "127.0.0.1:8500"}, Options{Client: client, Clock: clockwork.NewRealClock()})
	if err != nil {
		t.Fatal(err)
	}
	ask(t, b, "web.service.consul.", dns.TypeA, 0)
	ask(t, b, "n1.node.consul.", dns.TypeA, 0)
	pw := NewPolicyWatcher(Config{Address: "127.0.0.1:8500", FirstWait: 10 * time.Millisecond}, client, nil, nil, nil)
	if len(ourGoroutines()) < 3 {
		t.Fatal("the watches' goroutines are not seen before Close: this check could not fail")
	}
	b.Close()
	pw.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := ourGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
