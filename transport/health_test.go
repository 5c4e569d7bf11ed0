package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestHealth(c *fakeClock) *Health {
	return NewHealth(HealthConfig{
		FailureThreshold: 3, Cooldown: time.Second, MaxCooldown: 4 * time.Second,
		MinTimeout: 10 * time.Millisecond, MaxTimeout: time.Second, InitialTimeout: 500 * time.Millisecond,
		Now: c.now,
	})
}

// TestBreaker walks a breaker through its states with a fake clock. Each
// step is an action and the state and permit expected after it.
func TestBreaker(t *testing.T) {
	type step struct {
		do        string // "ok", "fail", "acquire", "wait <dur>", "force", "cancel"
		wantState string // "" leaves the state unchecked
		wantPerm  Permit // checked for "acquire" only
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"opens after threshold consecutive failures", []step{
			{do: "fail", wantState: "closed"}, {do: "fail", wantState: "closed"}, {do: "fail", wantState: "open"},
			{do: "acquire", wantState: "open", wantPerm: Denied},
		}},
		{"a success resets the count", []step{
			{do: "fail", wantState: "closed"}, {do: "fail", wantState: "closed"}, {do: "ok", wantState: "closed"},
			{do: "fail", wantState: "closed"}, {do: "fail", wantState: "closed"}, {do: "acquire", wantState: "closed", wantPerm: Allowed},
		}},
		{"half-open lets exactly one trial through and a success closes", []step{
			{do: "fail"}, {do: "fail"}, {do: "fail", wantState: "open"},
			{do: "wait 999ms", wantState: "open"}, {do: "acquire", wantState: "open", wantPerm: Denied},
			{do: "wait 1ms", wantState: "open"}, {do: "acquire", wantState: "half-open", wantPerm: Trial},
			{do: "acquire", wantState: "half-open", wantPerm: Denied},
			{do: "ok", wantState: "closed"}, {do: "acquire", wantState: "closed", wantPerm: Allowed},
		}},
		{"a failed trial reopens with a doubled cooldown, capped", []step{
			{do: "fail"}, {do: "fail"}, {do: "fail", wantState: "open"},
			{do: "wait 1s"}, {do: "acquire", wantState: "half-open", wantPerm: Trial}, {do: "fail", wantState: "open"},
			{do: "wait 1999ms"}, {do: "acquire", wantState: "open", wantPerm: Denied},
			{do: "wait 1ms"}, {do: "acquire", wantState: "half-open", wantPerm: Trial}, {do: "fail", wantState: "open"},
			{do: "wait 4s"}, {do: "acquire", wantState: "half-open", wantPerm: Trial}, {do: "fail", wantState: "open"},
			{do: "wait 4s"}, {do: "acquire", wantState: "half-open", wantPerm: Trial}, // capped at 4s, not 8s
		}},
		{"a canceled trial releases the slot without deciding", []step{
			{do: "fail"}, {do: "fail"}, {do: "fail"}, {do: "wait 1s"},
			{do: "acquire", wantState: "half-open", wantPerm: Trial}, {do: "cancel", wantState: "half-open"},
			{do: "acquire", wantState: "half-open", wantPerm: Trial},
		}},
		{"force lets a query through an open breaker and a success closes it", []step{
			{do: "fail"}, {do: "fail"}, {do: "fail", wantState: "open"},
			{do: "force", wantState: "half-open"}, {do: "ok", wantState: "closed"},
		}},
		{"rcode answers are not failures", []step{
			{do: "fail"}, {do: "fail"}, {do: "rcode", wantState: "closed"}, {do: "fail"}, {do: "fail", wantState: "closed"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{t: time.Unix(1e9, 0)}
			h := newTestHealth(c)
			for i, s := range tt.steps {
				var perm Permit
				switch {
				case s.do == "ok":
					h.Observe(time.Millisecond, ClassOK)
				case s.do == "rcode":
					h.Observe(time.Millisecond, ClassRcode)
				case s.do == "fail":
					h.Observe(time.Millisecond, ClassNetwork)
				case s.do == "cancel":
					h.Observe(time.Millisecond, ClassCanceled)
				case s.do == "acquire":
					perm = h.Acquire()
				case s.do == "force":
					h.Force()
				case len(s.do) > 5 && s.do[:5] == "wait ":
					d, err := time.ParseDuration(s.do[5:])
					if err != nil {
						t.Fatal(err)
					}
					c.advance(d)
				default:
					t.Fatalf("unknown step %q", s.do)
				}
				if s.do == "acquire" && perm != s.wantPerm {
					t.Fatalf("step %d (%s): permit %d, want %d", i, s.do, perm, s.wantPerm)
				}
				if got := h.Snapshot().State.String(); s.wantState != "" && got != s.wantState {
					t.Fatalf("step %d (%s): state %s, want %s", i, s.do, got, s.wantState)
				}
			}
		})
	}
}

func TestRTO(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	tests := []struct {
		name    string
		samples []time.Duration
		timeout int // timeouts observed after the samples
		want    time.Duration
	}{
		{"initial before any sample", nil, 0, 500 * time.Millisecond},
		{"first sample: srtt + 4*(srtt/2)", []time.Duration{20 * time.Millisecond}, 0, 60 * time.Millisecond},
		{"clamped to the minimum", []time.Duration{time.Millisecond}, 0, 10 * time.Millisecond},
		{"steady samples shrink the variance", []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}, 0, 20*time.Millisecond + 4*(10*time.Millisecond*27/64)},
		{"a timeout doubles it", []time.Duration{20 * time.Millisecond}, 1, 120 * time.Millisecond},
		{"doubling is capped at the maximum", []time.Duration{20 * time.Millisecond}, 10, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHealth(c)
			for _, s := range tt.samples {
				h.Observe(s, ClassOK)
			}
			for range tt.timeout {
				h.Observe(0, ClassTimeout)
			}
			if got := h.RTO(); got != tt.want {
				t.Fatalf("RTO = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Class
	}{
		{nil, ClassOK},
		{context.DeadlineExceeded, ClassTimeout},
		{fmt.Errorf("read: %w", context.Canceled), ClassCanceled},
		{&net.OpError{Op: "read", Err: syscall.ECONNREFUSED}, ClassNetwork},
		{fmt.Errorf("x: %w", ErrTruncated), ClassTruncated},
		{ErrMalformed, ClassMalformed},
		{&ExchangeError{Class: ClassTimeout, Err: errors.New("x")}, ClassTimeout},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// TestStaleSamples: an RTT estimate not refreshed for StaleAfter is
// replaced by the next sample instead of averaged with it, and is reported
// stale meanwhile.
func TestStaleSamples(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	h := NewHealth(HealthConfig{StaleAfter: time.Minute, Now: c.now})
	h.Observe(100*time.Millisecond, ClassOK)
	c.advance(30 * time.Second)
	h.Observe(20*time.Millisecond, ClassOK)
	if s := h.Snapshot(); s.Stale || s.SRTT != 90*time.Millisecond {
		t.Fatalf("fresh estimate: stale=%v srtt=%v, want averaged 90ms", s.Stale, s.SRTT)
	}
	c.advance(61 * time.Second)
	if s := h.Snapshot(); !s.Stale {
		t.Fatal("estimate not reported stale after StaleAfter")
	}
	h.Observe(5*time.Millisecond, ClassOK)
	if s := h.Snapshot(); s.Stale || s.SRTT != 5*time.Millisecond {
		t.Fatalf("after a stale estimate: stale=%v srtt=%v, want a fresh 5ms", s.Stale, s.SRTT)
	}
}

// TestHealthLastError: the last failed attempt is kept, with its error or
// the RCODE the upstream answered; successes and canceled attempts leave
// it alone.
func TestHealthLastError(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	servfail := new(dns.Msg)
	servfail.Rcode = dns.RcodeServerFailure
	tests := []struct {
		name  string
		class Class
		err   error
		reply *dns.Msg
		want  string // "" for no last error
	}{
		{"ok", ClassOK, nil, new(dns.Msg), ""},
		{"canceled", ClassCanceled, context.Canceled, nil, ""},
		{"timeout", ClassTimeout, errors.New("read udp: i/o timeout"), nil, "read udp: i/o timeout"},
		{"servfail", ClassRcode, nil, servfail, "answered SERVFAIL"},
		{"class only", ClassMalformed, nil, nil, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHealth(HealthConfig{})
			h.noteError(tt.class, tt.err, tt.reply, at)
			e := h.LastError()
			switch {
			case tt.want == "" && e != nil:
				t.Errorf("last error %+v, want none", e)
			case tt.want != "" && (e == nil || e.Err != tt.want || e.Class != tt.class || !e.At.Equal(at)):
				t.Errorf("last error %+v, want %q", e, tt.want)
			}
		})
	}
}

// fakeObserver records what it is given.
type fakeObserver struct{ got []float64 }

func (o *fakeObserver) Observe(v float64) { o.got = append(o.got, v) }

// TestRegistryObserveExchanges: the observer of a path is asked for once,
// when its health is made, and takes each attempt's duration in seconds;
// health made without one records nothing.
func TestRegistryObserveExchanges(t *testing.T) {
	r := NewRegistry(HealthConfig{}, nil)
	plain := r.Health(PathID{Upstream: "before", Proto: "udp"})
	asked := map[PathID]*fakeObserver{}
	var forgot []PathID
	r.ObserveExchanges(func(id PathID) Observer {
		if asked[id] != nil {
			t.Errorf("observer of %s asked for twice", id)
		}
		asked[id] = new(fakeObserver)
		return asked[id]
	}, func(id PathID) { forgot = append(forgot, id) })
	id := PathID{Upstream: "up", Proto: "udp"}
	h := r.Health(id)
	if r.Health(id) != h {
		t.Fatal("the same path got another health")
	}
	h.observeExchange(1500 * time.Microsecond)
	plain.observeExchange(time.Second) // no observer: nothing happens
	if o := asked[id]; o == nil || len(o.got) != 1 || o.got[0] != 0.0015 {
		t.Errorf("observed %+v, want [0.0015]", asked[id])
	}
	if len(asked) != 1 {
		t.Errorf("observers made for %d paths, want 1", len(asked))
	}
	// Forgotten when the last holder lets go, and only then; a path made
	// without an observer is not.
	r.Release(id)
	if len(forgot) != 0 {
		t.Errorf("forgotten while still held: %v", forgot)
	}
	r.Release(id)
	r.Release(PathID{Upstream: "before", Proto: "udp"})
	if len(forgot) != 1 || forgot[0] != id {
		t.Errorf("forgot %v, want [%v]", forgot, id)
	}
}
