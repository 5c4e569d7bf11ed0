package transport

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// TestFaultExchange: each fault kind, at a path's exchange, gives the
// outcome and failure class the real failure gives, and the path's health
// sees it.
func TestFaultExchange(t *testing.T) {
	tests := []struct {
		name      string
		fault     *Fault
		advance   time.Duration // fake time to let pass while the attempt runs
		wantClass Class
		wantRcode int
		wantTC    bool
		wantCalls int32 // exchanges that reached the exchanger
	}{
		{name: "no fault", wantClass: ClassOK, wantCalls: 1},
		{name: "drop: times out on the path's own timeout", fault: &Fault{Kind: FaultDrop}, advance: time.Second, wantClass: ClassTimeout},
		{name: "loss, lost", fault: &Fault{Kind: FaultLoss, Percent: 30, Lose: func() bool { return true }}, advance: time.Second, wantClass: ClassTimeout},
		{name: "loss, not lost", fault: &Fault{Kind: FaultLoss, Percent: 30, Lose: func() bool { return false }}, wantClass: ClassOK, wantCalls: 1},
		{name: "delay shorter than the timeout: answered late", fault: &Fault{Kind: FaultDelay, Delay: 50 * time.Millisecond}, advance: 50 * time.Millisecond, wantClass: ClassOK, wantCalls: 1},
		{name: "delay longer than the timeout: timed out", fault: &Fault{Kind: FaultDelay, Delay: 5 * time.Second}, advance: time.Second, wantClass: ClassTimeout},
		{name: "servfail", fault: &Fault{Kind: FaultServfail}, wantClass: ClassRcode, wantRcode: dns.RcodeServerFailure},
		{name: "truncate", fault: &Fault{Kind: FaultTruncate}, wantClass: ClassOK, wantTC: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clockwork.NewFakeClock()
			p := testPath(t, fc, "a", IPv4, answer(dns.RcodeSuccess))
			p.fault = new(faultCell)
			p.fault.Store(tt.fault)
			results := make(chan attempt, 1)
			ticket, timeout := p.Health.Begin(Estimate{})
			go exchangeOn(context.Background(), false, query(), nil, attempt{cand: candidate{p: p}}, ticket, timeout, false, fc, time.Time{}, results)
			var a attempt
			if tt.advance > 0 {
				// The attempt's timeout timer, and the delay's, must be
				// waiting before time moves.
				waiters := 1
				if tt.fault.Kind == FaultDelay {
					waiters = 2
				}
				if err := fc.BlockUntilContext(t.Context(), waiters); err != nil {
					t.Fatal(err)
				}
				fc.Advance(tt.advance)
			}
			a = <-results
			if a.class != tt.wantClass {
				t.Fatalf("class %s (err %v), want %s", a.class, a.err, tt.wantClass)
			}
			if a.msg != nil && (a.msg.Rcode != tt.wantRcode || a.msg.Truncated != tt.wantTC) {
				t.Fatalf("reply rcode %d tc %v, want %d %v", a.msg.Rcode, a.msg.Truncated, tt.wantRcode, tt.wantTC)
			}
			if a.msg != nil && a.msg.Id != query().Id && len(a.msg.Question) != 1 {
				t.Fatalf("reply does not match the query: %v", a.msg)
			}
			if got := p.Exchanger.(*fakeExchanger).calls.Load(); got != tt.wantCalls {
				t.Fatalf("%d exchanges reached the upstream, want %d", got, tt.wantCalls)
			}
			s := p.Health.Snapshot()
			if fails := tt.wantClass == ClassTimeout; fails != (s.Consecutive == 1) {
				t.Fatalf("health after %s: %+v", tt.wantClass, s)
			}
		})
	}
}

// TestFaultTruncateRetriesOverStream: a truncated answer made by a drill
// is retried over the path's TCP side, which answers, as with a real
// truncation.
func TestFaultTruncateRetriesOverStream(t *testing.T) {
	fc := clockwork.NewFakeClock()
	p := testPath(t, fc, "a", IPv4, nil)
	p.Stream = testPath(t, fc, "a", IPv4, answer(dns.RcodeSuccess))
	p.Stream.ID.Proto = "tcp"
	p.fault = new(faultCell)
	p.fault.Store(&Fault{Kind: FaultTruncate})
	res, err := race(t.Context(), query(), nil, cands(p), false, RaceConfig{Clock: fc}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != p.Stream || res.Msg.Truncated || res.Attempts != 2 {
		t.Fatalf("answered by %v after %d attempts, tc %v; want the TCP side after 2", res.Path, res.Attempts, res.Msg.Truncated)
	}
}

// TestRegistryFault: a fault is set on a held path's cell, shared by every
// path object of the id, and forgotten with the path.
func TestRegistryFault(t *testing.T) {
	r := NewRegistry(HealthConfig{}, nil)
	id := PathID{Upstream: "a", Proto: "udp"}
	f := &Fault{Kind: FaultDrop}
	if r.SetFault(id, f) {
		t.Fatal("fault set on a path the registry does not hold")
	}
	r.Health(id)
	cell := r.faultOf(id)
	r.Health(id) // a second path object of the same id (a reload)
	if !r.SetFault(id, f) || cell.Load() != f || r.faultOf(id) != cell {
		t.Fatal("fault not on the path's shared cell")
	}
	r.ClearFault(id, &Fault{Kind: FaultDrop}) // another drill's fault: left alone
	if r.Fault(id) != f {
		t.Fatal("ClearFault took off a fault it was not given")
	}
	r.Release(id)
	if !r.Holds(id) || r.Fault(id) != f {
		t.Fatal("fault lost while a path still holds the id")
	}
	r.Release(id)
	if r.Holds(id) || r.Fault(id) != nil {
		t.Fatal("fault outlived its path")
	}
	r.Health(id)
	if r.Fault(id) != nil {
		t.Fatal("a path that comes back has the old fault")
	}
}
