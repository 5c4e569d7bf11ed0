package edge_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
)

// ourGoroutines lists the stacks of goroutines running dnsedge code (the
// test servers excluded).
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "dnsedge/dnsedge/transport/transporttest") || strings.Contains(g, "_test.go") {
			continue
		}
		if strings.Contains(g, "dnsedge/dnsedge/edge") || strings.Contains(g, "dnsedge/dnsedge/transport") {
			out = append(out, g)
		}
	}
	return out
}

// TestCloseLeavesNoGoroutines: a server that resolved a host name, served
// UDP and TCP, reloaded and closed leaves nothing of itself running.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	boot := transporttest.StartBootstrap(t, bothFamilies)
	cfg, err := edge.Parse("leak.yaml", []byte(testListeners+seedConfig(boot.Addr(), up.Port())+"metrics:\n  address: \"127.0.0.1:0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := edge.New(cfg, edge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := srv.Addrs()
	for _, c := range []*dns.Client{{Net: "udp", Timeout: 3 * time.Second}, {Net: "tcp", Timeout: 3 * time.Second}} {
		addr := addrs["udp"][0]
		if c.Net == "tcp" {
			addr = addrs["tcp"][0]
		}
		q := new(dns.Msg)
		q.SetQuestion("h1.test.example.", dns.TypeA)
		if _, _, err := c.Exchange(q, addr.String()); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := ourGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
