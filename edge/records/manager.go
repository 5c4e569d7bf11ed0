package records

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/zone"
)

// ErrStale is returned by Apply when the zone's serial is not the one the
// caller's If-Match names (412).
var ErrStale = errors.New("the zone changed since that serial")

// ErrUnavailable is returned by a Store that cannot reach where it keeps
// zones (503): the change was not committed.
var ErrUnavailable = errors.New("the records store is unavailable")

// ErrNoZone is returned for a zone the API does not keep (404).
var ErrNoZone = errors.New("no such API zone")

// Manager keeps the API zones: their current version for GET and for the
// zone middleware (Watch makes it a zone.Feed), and Apply, which checks a
// change, commits it to the store, writes the audit line, and publishes
// it. Changes to one zone are serialized; different zones change
// independently. Safe for concurrent use.
type Manager struct {
	store Store
	audit io.Writer
	log   *slog.Logger
	now   func() time.Time
	// closeAudit closes the audit log file Open opened; nil otherwise.
	closeAudit func() error

	mu    sync.RWMutex // guards zones
	zones map[string]*zoneState

	notifyMu sync.Mutex // serializes Watch and the notifications
	watchers map[int]func(*zone.Zone)
	nextW    int

	changes, commitErrors, replaced atomic.Uint64
}

type zoneState struct {
	mu  sync.Mutex // serializes changes
	cur atomic.Pointer[version]
}

var _ zone.Feed = (*Manager)(nil)

// Deps are what a Manager needs besides its configuration.
type Deps struct {
	Store Store
	// Audit receives one JSON line per change; nil discards them.
	Audit io.Writer
	Log   *slog.Logger
	// Now is the clock of journal and audit times; nil is time.Now.
	Now func() time.Time
}

// AuditFile is the audit log Open writes, under its directory.
const AuditFile = "audit.jsonl"

// Open returns a Manager with the file store (compacting after
// compactAfter entries) and the audit log (AuditFile, one JSON line per
// change) under dir, keeping no zone yet (see Ensure).
func Open(dir string, compactAfter int, log *slog.Logger) (*Manager, error) {
	st, err := NewFileStore(dir, compactAfter, log)
	if err != nil {
		return nil, err
	}
	return OpenStore(dir, st, log)
}

// OpenStore returns a Manager over st with the audit log (AuditFile)
// under dir, keeping no zone yet (see Ensure). The Manager owns st: its
// Close closes st, and so does a failed OpenStore.
func OpenStore(dir string, st Store, log *slog.Logger) (*Manager, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		st.Close()
		return nil, fmt.Errorf("records audit log: %w", err)
	}
	af, err := os.OpenFile(filepath.Join(dir, AuditFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("records audit log: %w", err)
	}
	m := New(Deps{Store: st, Audit: af, Log: log})
	m.closeAudit = af.Close
	return m, nil
}

// SetCompactAfter sets how many changes of a zone its store's journal
// gathers before it is compacted, when the store compacts (FileStore).
func (m *Manager) SetCompactAfter(n int) {
	if s, ok := m.store.(interface{ SetCompactAfter(int) }); ok {
		s.SetCompactAfter(n)
	}
}

// New returns a Manager over d.Store keeping no zone yet (see Ensure).
func New(d Deps) *Manager {
	m := &Manager{
		store: d.Store, audit: d.Audit, log: d.Log, now: d.Now,
		zones: make(map[string]*zoneState), watchers: make(map[int]func(*zone.Zone)),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.audit == nil {
		m.audit = io.Discard
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// Ensure loads every zone of origins (canonical FQDNs) that m does not
// keep yet from the store, replaying its journal. Zones already kept stay
// as they are. On error no zone is added.
func (m *Manager) Ensure(origins []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	loaded := make(map[string]*zoneState)
	for _, o := range origins {
		if _, ok := m.zones[o]; ok {
			continue
		}
		v, err := m.load(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		zs := new(zoneState)
		zs.cur.Store(v)
		loaded[o] = zs
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for o, zs := range loaded {
		m.zones[o] = zs
	}
	return nil
}

// state returns the zone of origin, nil when m does not keep it.
func (m *Manager) state(origin string) *zoneState {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.zones[origin]
}

// load replays the zone of origin from the store.
func (m *Manager) load(origin string) (*version, error) {
	snap, entries, err := m.store.Load(origin)
	if err != nil {
		return nil, err
	}
	v := emptyVersion(origin)
	if snap.Seq > 0 {
		if v, err = fromSnapshot(origin, snap, 1<<31-1); err != nil {
			return nil, err
		}
	}
	// Every entry was checked as a whole when it was committed: replay
	// applies them to the RRsets and builds the zone once, at the end.
	for _, e := range entries {
		for i, d := range e.Changes {
			c := Change{Name: d.Name, Type: d.Type, Changetype: ChangeDelete}
			if d.After != nil {
				c = Change{Name: d.Name, Type: d.Type, Changetype: ChangeReplace, TTL: ptr(int64(d.After.TTL)), Records: d.After.Records}
			}
			k, rs, perr := c.parse(origin, 1<<31-1, at(i))
			if perr != nil {
				return nil, fmt.Errorf("replay %s entry %d: %w", origin, e.Seq, perr)
			}
			if d.After == nil {
				delete(v.sets, k)
			} else {
				v.sets[k] = rs
			}
		}
		v.seq, v.serial = e.Seq, e.Serial
	}
	if _, err := v.build(); err != nil {
		return nil, fmt.Errorf("replay %s: %w", origin, err)
	}
	m.log.Info("API zone loaded", "zone", origin, "serial", v.serial, "journal_entries", len(entries))
	return v, nil
}

// Origins returns the API zones, sorted.
func (m *Manager) Origins() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.zones))
	for o := range m.zones {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// Get returns the zone of origin as it is now.
func (m *Manager) Get(origin string) (Snapshot, error) {
	zs := m.state(origin)
	if zs == nil {
		return Snapshot{}, ErrNoZone
	}
	return zs.cur.Load().snapshot(), nil
}

// Apply checks p against the zone of origin and, when it is good and the
// zone's serial passes match (nil: any serial does), commits it: journal
// fsynced, audit line written, the new version published to the watchers.
// Nothing changes when it fails: an *InputError for bad input, ErrStale,
// ErrNoZone, or the store's error. A patch that changes nothing commits
// nothing and returns the zone as it is. TTLs above maxTTL are refused.
func (m *Manager) Apply(by, origin string, match func(serial uint32) bool, p *Patch, maxTTL uint32) (Snapshot, error) {
	zs := m.state(origin)
	if zs == nil {
		return Snapshot{}, ErrNoZone
	}
	changes, ierr := plan(p, origin, maxTTL)
	if ierr != nil {
		return Snapshot{}, ierr
	}
	return m.commit(zs, by, match, changes)
}

func (m *Manager) commit(zs *zoneState, by string, match func(uint32) bool, changes []planned) (Snapshot, error) {
	zs.mu.Lock()
	defer zs.mu.Unlock()
	cur := zs.cur.Load()
	if match != nil && !match(cur.serial) {
		return Snapshot{}, ErrStale
	}
	next, diff, err := apply(cur, changes)
	if errors.Is(err, errNoChange) {
		return cur.snapshot(), nil
	}
	if err != nil {
		return Snapshot{}, err
	}
	e := Entry{Seq: next.seq, Serial: next.serial, Time: m.now().UTC(), By: by, Changes: diff}
	if err := m.store.Commit(cur.origin, e, next.snapshot); err != nil {
		if errors.Is(err, ErrStale) {
			// A shared store: another instance changed the zone first.
			return Snapshot{}, err
		}
		m.commitErrors.Add(1)
		m.log.Error("API zone change not committed", "zone", cur.origin, "by", by, "error", err.Error())
		return Snapshot{}, fmt.Errorf("commit: %w", err)
	}
	zs.cur.Store(next)
	m.changes.Add(1)
	m.writeAudit(cur, e)
	m.notify(next.zone)
	return next.snapshot(), nil
}

// Replace makes snap the zone's state when it is newer (a higher Seq)
// than the one kept, and publishes it as a change does: for a store
// shared by several instances, whose other instances commit changes.
// The audit log is not written (the instance that made the change did).
// A snapshot not newer changes nothing. Safe for concurrent use with
// Apply.
func (m *Manager) Replace(snap Snapshot) error {
	zs := m.state(snap.Origin)
	if zs == nil {
		return fmt.Errorf("%w: %s", ErrNoZone, snap.Origin)
	}
	zs.mu.Lock()
	defer zs.mu.Unlock()
	cur := zs.cur.Load()
	if snap.Seq <= cur.seq {
		return nil
	}
	next, err := fromSnapshot(cur.origin, snap, 1<<31-1)
	if err != nil {
		return err
	}
	zs.cur.Store(next)
	m.replaced.Add(1)
	m.log.Info("API zone replaced from the store", "zone", cur.origin, "serial_before", cur.serial, "serial", next.serial)
	m.notify(next.zone)
	return nil
}

// auditLine is one line of the audit log.
type auditLine struct {
	Time         time.Time `json:"time"`
	By           string    `json:"token_id"`
	Zone         string    `json:"zone"`
	SerialBefore uint32    `json:"serial_before"`
	Serial       uint32    `json:"serial"`
	Changes      []Diff    `json:"changes"`
}

func (m *Manager) writeAudit(before *version, e Entry) {
	line, err := compactJSON(auditLine{Time: e.Time, By: e.By, Zone: before.origin, SerialBefore: before.serial, Serial: e.Serial, Changes: e.Changes})
	if err == nil {
		_, err = m.audit.Write(line)
	}
	if err != nil {
		// The change is committed; the journal holds who made it.
		m.log.Error("audit line not written", "zone", before.origin, "by", e.By, "serial", e.Serial, "error", err.Error())
	}
	m.log.Info("API zone changed", "zone", before.origin, "by", e.By, "serial", e.Serial, "rrsets", len(e.Changes))
}

// Watch calls put with the zone of every origin of origins now, and again
// with a zone each time it changes, until stop; see zone.Feed. An origin
// the Manager does not keep is an error.
func (m *Manager) Watch(origins []string, put func(*zone.Zone)) (stop func(), err error) {
	states := make([]*zoneState, len(origins))
	for i, o := range origins {
		if states[i] = m.state(o); states[i] == nil {
			return nil, fmt.Errorf("%w: %s", ErrNoZone, o)
		}
	}
	want := make(map[string]bool, len(origins))
	for _, o := range origins {
		want[o] = true
	}
	f := func(z *zone.Zone) {
		if want[z.Origin()] {
			put(z)
		}
	}
	m.notifyMu.Lock()
	defer m.notifyMu.Unlock()
	id := m.nextW
	m.nextW++
	m.watchers[id] = f
	for _, zs := range states {
		put(zs.cur.Load().zone)
	}
	return func() {
		m.notifyMu.Lock()
		defer m.notifyMu.Unlock()
		delete(m.watchers, id)
	}, nil
}

// notify gives z to every watcher.
func (m *Manager) notify(z *zone.Zone) {
	m.notifyMu.Lock()
	defer m.notifyMu.Unlock()
	for _, f := range m.watchers {
		f(z)
	}
}

// Zone returns the zone of origin as queries see it, nil when the
// Manager does not keep it.
func (m *Manager) Zone(origin string) *zone.Zone {
	zs := m.state(origin)
	if zs == nil {
		return nil
	}
	return zs.cur.Load().zone
}

// Lookup returns the API zone among origins with the longest origin
// containing name (a canonical FQDN), "" when none does.
func Lookup(origins []string, name string) string {
	best := ""
	for _, o := range origins {
		if dns.IsSubDomain(o, name) && len(o) > len(best) {
			best = o
		}
	}
	return best
}

// Close closes the store and the audit log.
func (m *Manager) Close() error {
	err := m.store.Close()
	if m.closeAudit != nil {
		err = errors.Join(err, m.closeAudit())
	}
	return err
}
