package drill

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/transport"
)

// Why a drill ended: the end label of dnsedge_drills_total and the audit
// log's end field.
const (
	EndExpired  = "expired"  // its duration passed
	EndDeleted  = "deleted"  // DELETE ended it early
	EndGone     = "gone"     // every path it acted on went away (reload, re-resolution)
	EndShutdown = "shutdown" // the server closed
)

// Errors of Start and End; the HTTP handler maps them to status codes.
var (
	// ErrNoUpstream: the target names no upstream of the configuration
	// in force (or one with no path yet). 404.
	ErrNoUpstream = errors.New("no such upstream")
	// ErrNoPath: the upstream has no path the target matches. 404.
	ErrNoPath = errors.New("no path matches the target")
	// ErrBusy: a path of the target is in another drill. 409.
	ErrBusy = errors.New("path already in a drill")
	// ErrUnknown: no active drill has that id. 404.
	ErrUnknown = errors.New("no active drill with that id")
)

// Drill is a drill as the API, the audit log and the status page show it.
type Drill struct {
	ID     string     `json:"id"`
	Target TargetView `json:"target"`
	Fault  FaultView  `json:"fault"`
	// Paths are the paths the fault acts on.
	Paths   []string  `json:"paths"`
	By      string    `json:"by"` // the grant that started it
	Started time.Time `json:"started"`
	Ends    time.Time `json:"ends"`
	// Ended and End are set once the drill is over: when, and why
	// (expired, deleted, gone, shutdown).
	Ended *time.Time `json:"ended,omitempty"`
	End   string     `json:"end,omitempty"`
}

// TargetView is a target as given, normalised.
type TargetView struct {
	Upstream string `json:"upstream"`
	Address  string `json:"address,omitempty"`
	Family   string `json:"family,omitempty"` // v4 | v6
	Protocol string `json:"protocol,omitempty"`
}

// FaultView is a fault as given, normalised.
type FaultView struct {
	Type    string  `json:"type"`
	Delay   string  `json:"delay,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

// Status is the drill state for the /status page.
type Status struct {
	Active []Drill `json:"active"`
	// Recent are the last drills that ended, newest first.
	Recent []Drill `json:"recent"`
}

// Faults is where the manager puts faults: the server's health registry.
type Faults interface {
	SetFault(transport.PathID, *transport.Fault) bool
	ClearFault(transport.PathID, *transport.Fault)
}

// Deps are what a Manager works with.
type Deps struct {
	Faults Faults
	// Paths returns the paths of the configuration in force, the TCP
	// sides of UDP paths included.
	Paths func() []*transport.Path
	// Clock runs the drills' deadlines; the real clock when nil.
	Clock clockwork.Clock
	Log   *slog.Logger
	// Audit records each drill's start and end (with a copy of the
	// drill); nil records nothing beyond the log lines. It is called
	// with the manager's lock held and must not call back into it.
	Audit func(AuditEvent)
}

// keepRecent is how many ended drills Status shows.
const keepRecent = 16

// Manager runs the drills of a server: it outlives configuration
// generations, as the paths' health does. It is safe for concurrent use.
type Manager struct {
	d Deps

	active  *prometheus.GaugeVec
	total   *prometheus.CounterVec
	mu      sync.Mutex
	drills  map[string]*running
	recent  []Drill
	stopped bool
}

// running is an active drill.
type running struct {
	view  Drill
	fault *transport.Fault
	ids   []transport.PathID
	timer clockwork.Timer
}

// NewManager returns a Manager with no drill.
func NewManager(d Deps) *Manager {
	if d.Clock == nil {
		d.Clock = clockwork.NewRealClock()
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		d: d, drills: make(map[string]*running),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dnsedge_drill_active", Help: "1 for each path a drill's fault acts on, by upstream, path and fault.",
		}, []string{"upstream", "path", "fault"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsedge_drills_total", Help: "Drills that ended, by fault and how they ended (expired, deleted, gone, shutdown).",
		}, []string{"fault", "end"}),
	}
	for k := transport.FaultDrop; k <= transport.FaultTruncate; k++ {
		for _, end := range []string{EndExpired, EndDeleted, EndGone, EndShutdown} {
			m.total.WithLabelValues(k.String(), end)
		}
	}
	return m
}

// Collectors returns the manager's metrics, to register once.
func (m *Manager) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.active, m.total}
}

// Start starts the drill spec on behalf of the grant by: it puts the fault
// on every path of the configuration in force that the target matches
// (UDP paths only for truncate) and arms its deadline. Nothing changes
// when it fails: ErrNoUpstream, ErrNoPath or ErrBusy, wrapped with the
// reason.
func (m *Manager) Start(spec Spec, by string) (Drill, error) {
	var ids []transport.PathID
	var names []string
	known := false
	for _, p := range m.d.Paths() {
		if p.ID.Upstream != spec.Target.Upstream {
			continue
		}
		known = true
		if !spec.Target.Matches(p.ID, p.Family) || (spec.Fault.Kind == transport.FaultTruncate && p.ID.Proto != "udp") {
			continue
		}
		if !slices.Contains(ids, p.ID) {
			ids = append(ids, p.ID)
			names = append(names, p.Name())
		}
	}
	switch {
	case !known:
		return Drill{}, fmt.Errorf("%w: %q has no path in the configuration in force", ErrNoUpstream, spec.Target.Upstream)
	case len(ids) == 0 && spec.Fault.Kind == transport.FaultTruncate:
		return Drill{}, fmt.Errorf("%w: %s has no UDP path (truncate acts on UDP paths only)", ErrNoPath, spec.Target)
	case len(ids) == 0:
		return Drill{}, fmt.Errorf("%w: %s", ErrNoPath, spec.Target)
	}
	id, err := newID()
	if err != nil {
		return Drill{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return Drill{}, errors.New("server closing")
	}
	for _, r := range m.drills {
		for _, pid := range ids {
			if slices.Contains(r.ids, pid) {
				return Drill{}, fmt.Errorf("%w: %s is in drill %s", ErrBusy, pid, r.view.ID)
			}
		}
	}
	f := spec.Fault // each drill its own fault, so that ending it clears only its own
	r := &running{fault: &f}
	for i, pid := range ids {
		if m.d.Faults.SetFault(pid, r.fault) {
			r.ids = append(r.ids, pid)
		} else {
			names[i] = ""
		}
	}
	names = slices.DeleteFunc(names, func(s string) bool { return s == "" })
	if len(r.ids) == 0 {
		return Drill{}, fmt.Errorf("%w: %s (its paths went away)", ErrNoPath, spec.Target)
	}
	now := m.d.Clock.Now()
	r.view = Drill{
		ID: id, Target: viewTarget(spec.Target), Fault: viewFault(spec.Fault), Paths: names, By: by,
		Started: now, Ends: now.Add(spec.Duration),
	}
	m.drills[id] = r
	for i, pid := range r.ids {
		m.active.WithLabelValues(pid.Upstream, names[i], f.Kind.String()).Set(1)
	}
	r.timer = m.d.Clock.AfterFunc(spec.Duration, func() { m.end(id, EndExpired, "") })
	m.audit(AuditEvent{Time: now, Action: "start", By: by, Drill: cloneDrill(r.view)})
	return cloneDrill(r.view), nil
}

// cloneDrill returns a copy of d that shares no slice with it: Prune may
// shorten an active drill's paths.
func cloneDrill(d Drill) Drill {
	d.Paths = slices.Clone(d.Paths)
	return d
}

// End ends the active drill id early on behalf of the grant by.
func (m *Manager) End(id, by string) (Drill, error) {
	d, ok := m.end(id, EndDeleted, by)
	if !ok {
		return Drill{}, fmt.Errorf("%w: %q", ErrUnknown, id)
	}
	return d, nil
}

// end ends drill id for reason, if it is still active.
func (m *Manager) end(id, reason, by string) (Drill, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.drills[id]
	if !ok {
		return Drill{}, false
	}
	m.finish(r, reason, by)
	return r.view, true
}

// finish takes r's fault off its paths and records its end; m.mu is held.
func (m *Manager) finish(r *running, reason, by string) {
	delete(m.drills, r.view.ID)
	r.timer.Stop()
	for i, pid := range r.ids {
		m.d.Faults.ClearFault(pid, r.fault)
		m.active.DeleteLabelValues(pid.Upstream, r.view.Paths[i], r.fault.Kind.String())
	}
	m.total.WithLabelValues(r.fault.Kind.String(), reason).Inc()
	now := m.d.Clock.Now()
	r.view.Ended, r.view.End = &now, reason
	m.recent = append([]Drill{r.view}, m.recent[:min(len(m.recent), keepRecent-1)]...)
	m.audit(AuditEvent{Time: now, Action: "end", By: by, Drill: cloneDrill(r.view)})
}

// Prune lets go of the paths of active drills that the configuration in
// force no longer has, and ends drills left with none (EndGone). The
// server calls it after each reload; List and Status call it too, for
// paths that re-resolution removed.
func (m *Manager) Prune() {
	live := make(map[transport.PathID]bool)
	for _, p := range m.d.Paths() {
		live[p.ID] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.drills {
		keep := 0
		for i, pid := range r.ids {
			if live[pid] {
				r.ids[keep], r.view.Paths[keep] = pid, r.view.Paths[i]
				keep++
				continue
			}
			m.d.Faults.ClearFault(pid, r.fault)
			m.active.DeleteLabelValues(pid.Upstream, r.view.Paths[i], r.fault.Kind.String())
			m.d.Log.Info("drill path gone", "drill", r.view.ID, "path", r.view.Paths[i])
		}
		if keep == 0 {
			m.finish(r, EndGone, "")
			continue
		}
		r.ids, r.view.Paths = r.ids[:keep], r.view.Paths[:keep]
	}
}

// List returns the active drills, oldest first.
func (m *Manager) List() []Drill {
	m.Prune()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.listLocked()
}

func (m *Manager) listLocked() []Drill {
	out := make([]Drill, 0, len(m.drills))
	for _, r := range m.drills {
		out = append(out, cloneDrill(r.view))
	}
	slices.SortFunc(out, func(a, b Drill) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Status returns the active drills and the last ones that ended.
func (m *Manager) Status() Status {
	m.Prune()
	m.mu.Lock()
	defer m.mu.Unlock()
	return Status{Active: m.listLocked(), Recent: slices.Clone(m.recent)}
}

// Close ends every drill (EndShutdown) and starts no more.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.stopped = true
	for _, r := range m.drills {
		m.finish(r, EndShutdown, "")
	}
	m.mu.Unlock()
	return nil
}

func newID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("drill id: %w", err)
	}
	return "d-" + hex.EncodeToString(b[:]), nil
}

func viewTarget(t Target) TargetView {
	v := TargetView{Upstream: t.Upstream, Protocol: t.Proto}
	if t.Addr.IsValid() {
		v.Address = t.Addr.String()
		if t.Port != 0 {
			v.Address = netip.AddrPortFrom(t.Addr, t.Port).String()
		}
	}
	switch t.Family {
	case transport.IPv4:
		v.Family = "v4"
	case transport.IPv6:
		v.Family = "v6"
	}
	return v
}

func viewFault(f transport.Fault) FaultView {
	v := FaultView{Type: f.Kind.String(), Percent: f.Percent}
	if f.Delay > 0 {
		v.Delay = f.Delay.String()
	}
	return v
}
