package drill

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dnsedge/dnsedge/transport"
)

// fakeFaults is the registry's fault cells for a fixed set of paths.
type fakeFaults struct {
	mu sync.Mutex
	m  map[transport.PathID]*transport.Fault
}

func (f *fakeFaults) SetFault(id transport.PathID, x *transport.Fault) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[id]; !ok {
		return false
	}
	f.m[id] = x
	return true
}

func (f *fakeFaults) ClearFault(id transport.PathID, x *transport.Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.m[id]; ok && cur == x {
		f.m[id] = nil
	}
}

func (f *fakeFaults) get(id transport.PathID) *transport.Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[id]
}

// bed is a manager over two upstreams' paths: up over both families
// (UDP, with its TCP sides), dot over TLS.
type bed struct {
	m      *Manager
	faults *fakeFaults
	clock  *clockwork.FakeClock
	audit  []AuditEvent // under mu
	mu     sync.Mutex
	paths  []*transport.Path
}

func path(up, proto, addr string) *transport.Path {
	ap := netip.MustParseAddrPort(addr)
	return &transport.Path{ID: transport.PathID{Upstream: up, Proto: proto, Addr: ap}, Family: transport.FamilyOf(ap.Addr())}
}

func newBed(t *testing.T) *bed {
	b := &bed{faults: &fakeFaults{m: make(map[transport.PathID]*transport.Fault)}, clock: clockwork.NewFakeClock()}
	b.paths = []*transport.Path{
		path("up", "udp", "192.0.2.1:53"), path("up", "tcp", "192.0.2.1:53"),
		path("up", "udp", "[2001:db8::1]:53"), path("up", "tcp", "[2001:db8::1]:53"),
		path("dot", "tls", "192.0.2.2:853"),
	}
	for _, p := range b.paths {
		b.faults.m[p.ID] = nil
	}
	b.m = NewManager(Deps{Faults: b.faults, Clock: b.clock, Paths: func() []*transport.Path {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.paths
	}, Audit: func(e AuditEvent) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.audit = append(b.audit, e)
	}})
	t.Cleanup(func() { b.m.Close() })
	return b
}

func (b *bed) faulted() []string {
	var out []string
	for _, p := range b.paths {
		if f := b.faults.get(p.ID); f != nil {
			out = append(out, p.Name()+"="+f.Kind.String())
		}
	}
	return out
}

func TestManagerTargets(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		want    string // the paths faulted, joined
		wantErr error
	}{
		{"every path of an upstream", Spec{Target: Target{Upstream: "up"}, Fault: transport.Fault{Kind: transport.FaultDrop}},
			"up/udp/192.0.2.1:53=drop up/tcp/192.0.2.1:53=drop up/udp/[2001:db8::1]:53=drop up/tcp/[2001:db8::1]:53=drop", nil},
		{"one family", Spec{Target: Target{Upstream: "up", Family: transport.IPv6}, Fault: transport.Fault{Kind: transport.FaultServfail}},
			"up/udp/[2001:db8::1]:53=servfail up/tcp/[2001:db8::1]:53=servfail", nil},
		{"truncate: UDP paths only", Spec{Target: Target{Upstream: "up"}, Fault: transport.Fault{Kind: transport.FaultTruncate}},
			"up/udp/192.0.2.1:53=truncate up/udp/[2001:db8::1]:53=truncate", nil},
		{"truncate on a TLS upstream", Spec{Target: Target{Upstream: "dot"}, Fault: transport.Fault{Kind: transport.FaultTruncate}}, "", ErrNoPath},
		{"unknown upstream", Spec{Target: Target{Upstream: "nope"}, Fault: transport.Fault{Kind: transport.FaultDrop}}, "", ErrNoUpstream},
		{"no such address", Spec{Target: Target{Upstream: "up", Addr: netip.MustParseAddr("192.0.2.9")}, Fault: transport.Fault{Kind: transport.FaultDrop}}, "", ErrNoPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBed(t)
			tt.spec.Duration = time.Minute
			d, err := b.m.Start(tt.spec, "ops")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if got := strings.Join(b.faulted(), " "); got != tt.want {
				t.Fatalf("faulted %q, want %q", got, tt.want)
			}
			if err == nil && (len(d.Paths) == 0 || d.Ends.Sub(d.Started) != time.Minute) {
				t.Fatalf("drill %+v", d)
			}
		})
	}
}

func TestManagerLifecycle(t *testing.T) {
	b := newBed(t)
	drop := Spec{Target: Target{Upstream: "up", Family: transport.IPv6}, Fault: transport.Fault{Kind: transport.FaultDrop}, Duration: time.Minute}
	d, err := b.m.Start(drop, "ops")
	if err != nil {
		t.Fatal(err)
	}
	// A path in a drill is in no other.
	if _, err := b.m.Start(Spec{Target: Target{Upstream: "up"}, Fault: transport.Fault{Kind: transport.FaultServfail}, Duration: time.Minute}, "ops"); !errors.Is(err, ErrBusy) {
		t.Fatalf("overlapping drill: %v", err)
	}
	if got := value(t, b.m.active.WithLabelValues("up", "up/udp/[2001:db8::1]:53", "drop")); got != 1 {
		t.Fatalf("active gauge %v", got)
	}
	v4, err := b.m.Start(Spec{Target: Target{Upstream: "up", Family: transport.IPv4}, Fault: transport.Fault{Kind: transport.FaultLoss, Percent: 30}, Duration: 10 * time.Minute}, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.m.List()); n != 2 {
		t.Fatalf("%d active drills", n)
	}

	// The deadline ends the first; the second runs on.
	b.clock.Advance(time.Minute)
	waitFor(t, func() bool { return len(b.m.List()) == 1 })
	if got := strings.Join(b.faulted(), " "); got != "up/udp/192.0.2.1:53=loss up/tcp/192.0.2.1:53=loss" {
		t.Fatalf("after the deadline: %s", got)
	}
	if got := value(t, b.m.total.WithLabelValues("drop", EndExpired)); got != 1 {
		t.Fatalf("expired count %v", got)
	}
	if got := count(b.m.active); got != 2 {
		t.Fatalf("%d active gauges, want the second drill's 2", got)
	}

	// Re-resolution took the IPv4 TCP side away: the drill lets go of it
	// and goes on; with every path gone it ends.
	b.mu.Lock()
	b.paths = append(b.paths[:1], b.paths[2:]...)
	b.mu.Unlock()
	if ds := b.m.List(); len(ds) != 1 || len(ds[0].Paths) != 1 {
		t.Fatalf("after a path went: %+v", ds)
	}
	b.mu.Lock()
	b.paths = b.paths[1:]
	b.mu.Unlock()
	st := b.m.Status()
	if len(st.Active) != 0 || len(st.Recent) != 2 || st.Recent[0].End != EndGone || st.Recent[1].End != EndExpired {
		t.Fatalf("status %+v", st)
	}
	if _, err := b.m.End(v4.ID, "ops"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("ending an ended drill: %v", err)
	}

	// DELETE ends one early, and its timer does nothing afterwards.
	d2, err := b.m.Start(drop, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.m.End(d2.ID, "root"); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Hour)
	if got := value(t, b.m.total.WithLabelValues("drop", EndDeleted)); got != 1 {
		t.Fatalf("deleted count %v", got)
	}
	if got := b.faulted(); len(got) != 0 {
		t.Fatalf("faults left: %v", got)
	}

	// The audit log: every start and end, in order, with who.
	b.m.Close()
	b.mu.Lock()
	var lines []string
	for _, e := range b.audit {
		lines = append(lines, e.Drill.ID+" "+e.Action+" "+e.Drill.End+" "+e.Drill.By+" "+e.By)
	}
	b.mu.Unlock()
	want := []string{
		d.ID + " start  ops ops", v4.ID + " start  ops ops", d.ID + " end expired ops ", v4.ID + " end gone ops ",
		d2.ID + " start  ops ops", d2.ID + " end deleted ops root",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if _, err := b.m.Start(drop, "ops"); err == nil {
		t.Fatal("a drill started after Close")
	}
}

// waitFor polls cond: a drill's deadline fires on the fake clock's own
// goroutine.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("not within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// value reads a gauge or counter.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

// count returns how many series c has.
func count(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 64)
	c.Collect(ch)
	close(ch)
	return len(ch)
}
