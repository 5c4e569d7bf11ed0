package transport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// FaultKind is what a Fault does to a path's exchanges.
type FaultKind uint8

// Fault kinds.
const (
	// FaultDrop: nothing comes back; each exchange runs to its own
	// timeout, as on a blackholed path.
	FaultDrop FaultKind = iota + 1
	// FaultDelay: the query leaves Delay late, so its answer comes that
	// much later; an exchange whose timeout ends first times out.
	FaultDelay
	// FaultLoss: Percent of the exchanges are dropped (FaultDrop), the
	// others run as usual.
	FaultLoss
	// FaultServfail: every exchange is answered SERVFAIL at once,
	// without reaching the upstream.
	FaultServfail
	// FaultTruncate: every exchange is answered with an empty reply with
	// TC set, at once, so the race retries it over the path's Stream as
	// it would a real truncated answer. Only meaningful on a UDP path.
	FaultTruncate
)

var faultNames = [...]string{"", "drop", "delay", "loss", "servfail", "truncate"}

func (k FaultKind) String() string {
	if int(k) < len(faultNames) && k != 0 {
		return faultNames[k]
	}
	return fmt.Sprintf("fault(%d)", uint8(k))
}

// ParseFaultKind returns the kind named s ("drop", "delay", "loss",
// "servfail", "truncate").
func ParseFaultKind(s string) (FaultKind, bool) {
	for i, n := range faultNames {
		if n != "" && n == s {
			return FaultKind(i), true
		}
	}
	return 0, false
}

// A Fault is injected at a path's exchange (a drill): it stands in for the
// exchanger, and what it makes of an exchange is observed by the path's
// health and the race exactly as the real failure would be. It is
// immutable once set on a path.
type Fault struct {
	Kind    FaultKind
	Delay   time.Duration // FaultDelay
	Percent float64       // FaultLoss: the share of exchanges lost, 0 to 100
	// Lose decides, for FaultLoss, whether one exchange is lost; nil
	// draws with Percent from math/rand/v2.
	Lose func() bool
}

// ErrFaultDropped is what an exchange dropped by a Fault fails with once
// its timeout passed: it wraps context.DeadlineExceeded, so the attempt
// is classified a timeout, as on a real blackholed path.
var ErrFaultDropped = fmt.Errorf("dropped by a drill: %w", context.DeadlineExceeded)

// exchange runs one exchange of ex under f, on clock.
func (f *Fault) exchange(ctx context.Context, ex Exchanger, q *dns.Msg, clock clockwork.Clock) (*dns.Msg, error) {
	switch f.Kind {
	case FaultDrop:
		return dropped(ctx)
	case FaultLoss:
		if f.lost() {
			return dropped(ctx)
		}
	case FaultDelay:
		t := clock.NewTimer(f.Delay)
		select {
		case <-t.Chan():
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	case FaultServfail:
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeServerFailure)
		return m, nil
	case FaultTruncate:
		m := new(dns.Msg)
		m.SetReply(q)
		m.Truncated = true
		return m, nil
	}
	return ex.Exchange(ctx, q)
}

func (f *Fault) lost() bool {
	if f.Lose != nil {
		return f.Lose()
	}
	return rand.Float64()*100 < f.Percent
}

// dropped waits for the attempt's end as a path that never answers
// makes it wait.
func dropped(ctx context.Context) (*dns.Msg, error) {
	<-ctx.Done()
	if ctx.Err() == context.DeadlineExceeded {
		return nil, ErrFaultDropped
	}
	return nil, ctx.Err()
}

// faultCell is where a path's fault is set: shared by every path object
// of one PathID through the registry, so that a fault outlives a reload
// that keeps the path.
type faultCell = atomic.Pointer[Fault]

// SetFault puts f on the path id (nil takes the fault off) and reports
// whether the registry holds that path. Every exchange and probe started
// on the path afterwards goes through f; those under way are not
// changed. Safe for concurrent use.
func (r *Registry) SetFault(id PathID, f *Fault) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[id]
	if !ok {
		return false
	}
	e.fault.Store(f)
	return true
}

// ClearFault takes f off the path id if it is still the path's fault.
func (r *Registry) ClearFault(id PathID, f *Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[id]; ok {
		e.fault.CompareAndSwap(f, nil)
	}
}

// Fault returns the fault on the path id, nil when none (or when the
// registry does not hold the path).
func (r *Registry) Fault(id PathID) *Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[id]; ok {
		return e.fault.Load()
	}
	return nil
}

// Holds reports whether the registry holds the path id: whether any path
// object of it is alive.
func (r *Registry) Holds(id PathID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[id]
	return ok
}

// faultOf returns the fault cell of id, held with its health; nil when the
// registry does not hold id.
func (r *Registry) faultOf(id PathID) *faultCell {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[id]; ok {
		return &e.fault
	}
	return nil
}

// Fault returns the drill fault on p, nil when none.
func (p *Path) Fault() *Fault {
	if p.fault == nil {
		return nil
	}
	return p.fault.Load()
}
